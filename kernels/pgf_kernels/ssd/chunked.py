"""The SSD (Mamba-2) scan in its chunked (matrix) form, in plain PyTorch: the fast CPU path.

Within a chunk of T positions, with a_t = sum_{r<=t} dt_r A (the cumulative log-decay, <= 0,
non-increasing) and u_s = dt_s x_s:

    y_t     = sum_{s<=t} exp(a_t - a_s) (C_t . B_s) u_s  +  exp(a_t) S_in C_t  +  D x_t
    S_out   = exp(a_T) S_in  +  sum_s exp(a_T - a_s) u_s ⊗ B_s

The first sum is a (T x T) decay-masked C Bᵀ matrix times u, for all chunks, heads and batch
rows at once (batched matmuls). The differences a_t - a_s are masked to -inf above the diagonal
before exp, so only exponents <= 0 are formed (never exp(a_t) / exp(a_s), which overflows).
The state entering each chunk comes from a short sequential pass over chunks. The tail chunk
is padded with dt = 0 (decay 1, no input), which leaves the state unchanged.

Heads are viewed as (groups, heads per group), so B and C broadcast over the heads of their
group without a copy. Only differentiable torch ops: autograd, torch.func.jvp and vmap work on
it as they are, and it runs on any device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pgf_kernels.ssd.shapes import check_shapes, work_dtype

DEFAULT_CHUNK = 64


def _chunked(t: torch.Tensor, n_chunks: int, T: int) -> torch.Tensor:
    """(b, L, ...) -> (b, n_chunks, T, ...), the tail padded with zeros."""
    pad = n_chunks * T - t.shape[1]
    if pad:
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
    return t.reshape(t.shape[0], n_chunks, T, *t.shape[2:])


def ssd_scan_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y (b, L, H, P) in x's dtype, h_last (b, H, P, N) in the work dtype), as `ssd_scan_ref`;
    `chunk` (positions per chunk, default 64) changes only the order of work."""
    b, L, H, P, G, N = check_shapes(x, dt, A, B, C, D, h0)
    work = work_dtype(x)
    R = H // G
    state = (torch.zeros(b, G, R, P, N, dtype=work, device=x.device) if h0 is None
             else h0.to(work).reshape(b, G, R, P, N))
    if L == 0:
        return x.new_zeros(b, 0, H, P), state.reshape(b, H, P, N)
    T = max(1, min(int(chunk or DEFAULT_CHUNK), L))
    nc = -(-L // T)

    xw = _chunked(x.to(work), nc, T).reshape(b, nc, T, G, R, P)
    dtw = _chunked(dt.to(work), nc, T).reshape(b, nc, T, G, R)
    Bw, Cw = _chunked(B.to(work), nc, T), _chunked(C.to(work), nc, T)  # (b, nc, T, G, N)
    u = dtw[..., None] * xw  # (b, nc, T, G, R, P)
    a = torch.cumsum(dtw * A.to(work).reshape(G, R), dim=2)  # (b, nc, T, G, R)

    # within chunks: decays exp(a_t - a_s) for s <= t, as (b, nc, G, R, t, s)
    a_heads = a.permute(0, 1, 3, 4, 2)  # (b, nc, G, R, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    segment = (a_heads[..., :, None] - a_heads[..., None, :]).masked_fill(~causal, float("-inf"))
    CB = torch.einsum("bctgn,bcsgn->bcgts", Cw, Bw)
    y = torch.einsum("bcgrts,bcsgrp->bctgrp", torch.exp(segment) * CB[:, :, :, None], u)

    # each chunk's end state from a zero start, then the states entering the chunks in sequence
    to_end = torch.exp(a[:, :, -1:] - a)  # (b, nc, T, G, R)
    local = torch.einsum("bctgr,bctgrp,bctgn->bcgrpn", to_end, u, Bw)
    chunk_decay = torch.exp(a[:, :, -1])[..., None, None]  # (b, nc, G, R, 1, 1)
    starts = []
    for decay_c, local_c in zip(chunk_decay.unbind(1), local.unbind(1)):
        starts.append(state)
        state = decay_c * state + local_c
    S_in = torch.stack(starts, dim=1)  # (b, nc, G, R, P, N)

    y = y + torch.exp(a)[..., None] * torch.einsum("bcgrpn,bctgn->bctgrp", S_in, Cw)
    y = y.reshape(b, nc * T, H, P)[:, :L]
    if D is not None:
        y = y + D.to(work)[:, None] * x.to(work)
    return y.to(x.dtype), state.reshape(b, H, P, N)
