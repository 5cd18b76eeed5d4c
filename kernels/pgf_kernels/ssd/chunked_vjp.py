"""The hand-written VJP of the chunked SSD scan (`ssd.chunked`): plain PyTorch, no autograd.

For one chunk (per batch row and head; notation of `ssd.chunked`), with M_ts = exp(a_t - a_s)
for s <= t (else 0), G_ts = C_t · B_s, W = M ∘ G, e_t = exp(a_t), to_end_s = exp(a_T - a_s), the
cotangents dy_t of y and dS_out of the chunk's end state pull back as

    dS_in   = e_T dS_out + sum_t e_t dy_t ⊗ C_t          (passed to the chunk before, in reverse)
    du_s    = sum_t W_ts dy_t + to_end_s dS_out B_s
    dG_ts   = sum_heads-of-group M_ts (dy_t · u_s)       -> dC_t = sum_s dG_ts B_s, dB_s = sum_t dG_ts C_t
    dB_s   += sum_heads-of-group to_end_s dS_outᵀ u_s;   dC_t += sum_heads-of-group e_t S_inᵀ dy_t
    da_t    = sum_s g_ts - sum_s g_st  (g = M ∘ G ∘ (dy uᵀ), from the decays M)
            + dy_t · (e_t S_in C_t)  (the state read out) - to_end_t (u_t · dS_out B_t)
            + [t = T] (e_T <S_in, dS_out> + sum_s to_end_s (u_s · dS_out B_s))   (the state carried)
    d(dt A)_r = sum_{t >= r} da_t (a is a cumulative sum);  ddt = A d(dt A) + x · du;  dx = dt du + D dy

In the forward's two layouts every product is one batched matmul: the (T x T) ones per head
(head-major), those with the state over all of a group's heads at once (position-major); only
the reverse pass of the chunk-to-chunk state is sequential. Given the output y and the chunk
starts of the saving forward (`ssd_scan_saving`), it runs no part of the forward again except
the decays and C·Bᵀ, and not those when that forward kept them (keep_work, for a VJP that
follows at once, as a Mamba-2 mixer's tile VJP does). Against autograd through the chunked
forward (what `ssd_scan_vjp` ran for the "cpu" backend before), the scan's reverse pass alone is
1.4 to 1.8 times faster (`python -m bench.ssd_scan`, mode vjp-autograd); inside a Mamba-2
mixer's tile VJP the gain is a few percent (`python -m bench.mamba2_mixer`).
"""

from __future__ import annotations

import torch

from pgf_kernels.ssd.chunked import (
    ChunkWork,
    chunk_inputs,
    chunk_length,
    chunk_starts,
    flat,
    from_position_major,
    position_major,
    within_chunk_decays,
)
from pgf_kernels.ssd.shapes import check_shapes, work_dtype


def ssd_scan_chunked_vjp(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    h0: torch.Tensor | None,
    dy: torch.Tensor | None,
    dh_last: torch.Tensor | None,
    chunk: int | None = None,
    starts: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    kept: ChunkWork | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, ddt, dB, dC, dh0) of `ssd_scan_chunked(x, dt, A, B, C, D, h0, chunk)` for cotangents
    dy (b, L, H, P) of y and dh_last (b, H, P, N) of the end state (None: zero); dh0 in the work
    dtype, the others in their inputs' dtypes. `starts` (b, ceil(L / T), H, P, N): the states
    entering the chunks, as `ssd_scan_chunked_saving` returns them (None: recomputed from h0).
    `y`: that call's output, used when it is in the work dtype: the part of da that reads
    exp(a_t) forward, dy_t · (y_t - D x_t), then needs no product of its own. `kept`: what that
    call kept with keep_work (the chunked inputs, decays and C·Bᵀ), not formed again here."""
    b, L, H, P, G, N = check_shapes(x, dt, A, B, C, D, h0)
    work = work_dtype(x)
    R = H // G
    with torch.no_grad():
        zero_state = torch.zeros(b, G, R, P, N, dtype=work, device=x.device)
        d_state = zero_state if dh_last is None else dh_last.to(work).reshape(b, G, R, P, N)
        if L == 0:
            return (torch.zeros_like(x), torch.zeros_like(dt), torch.zeros_like(B), torch.zeros_like(C),
                    d_state.reshape(b, H, P, N).clone())
        T = chunk_length(chunk, L)
        c = chunk_inputs(x, dt, A, B, C, G, T, work) if kept is None else kept.c
        nc = c.x.shape[1]
        if starts is None:
            S_in, _ = chunk_starts(c, zero_state if h0 is None else h0.to(work).reshape(b, G, R, P, N))
        else:
            S_in = starts.to(work).reshape(b, nc, G, R, P, N)
        S_flat = S_in.flatten(3, 4)  # (b, nc, G, R·P, N)
        dy_pm = (torch.zeros_like(c.x) if dy is None else position_major(dy.to(work), G, T))  # (b, nc, G, T, R, P)

        a_pm = c.a_pm
        e = torch.exp(a_pm)  # (b, nc, G, T, R)
        to_end = torch.exp(a_pm[..., -1:, :] - a_pm)
        e_last = torch.exp(c.a[..., -1])  # (b, nc, G, R)
        u = c.x * c.dt[..., None] if kept is None else kept.u_heads.movedim(3, 4)  # position-major (b, nc, G, T, R, P)

        # the state read out, exp(a_t) S_in C_t: its cotangent's sum over t enters dS_in
        dy_e = flat(dy_pm * e[..., None])  # (b, nc, G, T, R·P)
        read_out = (dy_e.mT @ c.C).reshape(b, nc, G, R, P, N)  # sum_t e_t dy_t ⊗ C_t
        dC = dy_e @ S_flat  # sum_heads e_t S_inᵀ dy_t, (b, nc, G, T, N)
        # da_t's terms where a_t enters forward (the read-out, and the rows t of the decays within
        # the chunk) add up to dy_t · (y_t - D x_t)
        use_y = y is not None and y.dtype == work
        if use_y:
            y_scan = y if D is None else torch.addcmul(y, D.to(work)[:, None], x.to(work), value=-1.0)
            da = (dy_pm * position_major(y_scan, G, T)).sum(-1)  # (b, nc, G, T, R)
        else:
            y_read = (c.C @ S_flat.mT).unflatten(-1, (R, P)) * e[..., None]
            da = (dy_pm * y_read).sum(-1)
        del dy_e

        # the chunk-to-chunk state in reverse: each chunk's dS_out, and dh0
        dS_out = torch.empty(b, nc, G, R, P, N, dtype=work, device=x.device)
        dS_out[:, -1] = d_state
        for k in range(nc - 1, 0, -1):  # written in place: dS_out of chunk k - 1 is dS_in of chunk k
            torch.addcmul(read_out[:, k], e_last[:, k, :, :, None, None], dS_out[:, k], out=dS_out[:, k - 1])
        dh0 = torch.addcmul(read_out[:, 0], e_last[:, 0, :, :, None, None], dS_out[:, 0]).reshape(b, H, P, N)

        # the state carried to the chunk's end, exp(a_T - a_s) u_s ⊗ B_s
        dS_flat = dS_out.flatten(3, 4)
        dSB = (c.B @ dS_flat.mT).unflatten(-1, (R, P))  # dS_out B_s, (b, nc, G, T, R, P)
        du = dSB * to_end[..., None]
        carried = (u * du).sum(-1)  # (b, nc, G, T, R)
        da -= carried
        state_dot = (S_in.flatten(-2).unsqueeze(-2) @ dS_out.flatten(-2).unsqueeze(-1))[..., 0, 0]  # <S_in, dS_out>
        da[..., -1, :] += carried.sum(-2) + e_last * state_dot
        dB = flat(u * to_end[..., None]) @ dS_flat  # (b, nc, G, T, N)
        del dSB, carried

        # within chunks, head-major: the (T x T) products per head
        dy_heads = dy_pm.movedim(4, 3).contiguous()  # (b, nc, G, R, T, P)
        u_heads = u.movedim(4, 3).contiguous()
        if kept is None:
            CB = c.C @ c.B.mT  # (b, nc, G, t, s)
            M = within_chunk_decays(c.a)  # (b, nc, G, R, t, s)
            du += ((M * CB[:, :, :, None]).mT @ dy_heads).movedim(3, 4)
            g = M.mul_(dy_heads @ u_heads.mT)  # M_ts (dy_t · u_s) per head
            dCB = g.sum(3)  # (b, nc, G, t, s)
            g.mul_(CB[:, :, :, None])  # the cotangent of a_t - a_s
        else:
            du += (kept.weights.mT @ dy_heads).movedim(3, 4)
            g = dy_heads @ u_heads.mT
            dCB = (kept.decays * g).sum(3)
            g.mul_(kept.weights)
        da += (-g.sum(-2) if use_y else g.sum(-1) - g.sum(-2)).transpose(-1, -2)
        dB += dCB.mT @ c.C
        dC += dCB @ c.B
        del g, dy_heads, u_heads

        # a = cumsum(dt A), u = dt x
        d_dtA = da.flip(-2).cumsum(-2).flip(-2)
        ddt = d_dtA * A.to(work).reshape(G, 1, R) + (c.x * du).sum(-1)
        dx = from_position_major(c.dt[..., None] * du, L)
        if D is not None and dy is not None:
            dx = torch.addcmul(dx, D.to(work)[:, None], dy.to(work))
        ddt = from_position_major(ddt, L)
        dB = from_position_major(dB.unsqueeze(-2), L).reshape(b, L, G, N)
        dC = from_position_major(dC.unsqueeze(-2), L).reshape(b, L, G, N)
    return dx.to(x.dtype), ddt.to(dt.dtype), dB.to(B.dtype), dC.to(C.dtype), dh0
