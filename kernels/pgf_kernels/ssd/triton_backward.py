"""The SSD scan's Triton adjoint (reverse mode): kernels and `ssd_backward`.

With G the cotangent of the state leaving a chunk (G_out) and a, decay, u = dt x as in the
forward (`triton_forward`), per chunk:

    G_in  = exp(a_T) G_out + (dy * exp(a))ᵀ C                         (the states kernel, chunks in reverse)
    dx    = dt * [(decay ∘ C Bᵀ)ᵀ dy + exp(a_T - a) * (B G_outᵀ)] + D dy
    dB    = dt * [Qᵀ C + exp(a_T - a) * (x G_out)],  Q = decay ∘ (dy xᵀ)
    dC    = (Q * dt) B + exp(a) * (dy S_in)
    da_t  = sum_s V[t, s] - sum_s V[s, t] + exp(a_t) dy_t . (S_in C_t) - U_t  (+ sum U + exp(a_T) <G_out, S_in> at the end),
            V = decay ∘ C Bᵀ ∘ dt ∘ (dy xᵀ),  U = exp(a_T - a) dt x . (B G_outᵀ)
    ddt   = x . [...] of dx  +  A * reverse-cumsum(da);   dA = sum dt * reverse-cumsum(da)

The chunk kernel takes every chunk at once from the saved chunk starts and the G_out of the
states kernel. dB, dC, ddt and dA are written as partials (per head and P-block) and summed by
torch in a fixed order (no atomics: deterministic). dD = sum dy x by torch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from pgf_kernels.ssd.shapes import check_shapes, work_dtype
from pgf_kernels.ssd.triton_util import (
    causal_decay, chunk_rows, config, dot, load_rows, load_tile, log_decays, plan, strides,
)
from pgf_kernels.triton_common import alloc, exp


@triton.jit
def _states_kernel(
    dt_ptr, A_ptr, C_ptr, dy_ptr, dh_ptr, gend_ptr, dh0_ptr,
    L, H, P, N, R, chunk, n_chunks,
    sd_b, sd_l, sd_h, sC_b, sC_l, sC_g, sC_n, sg_b, sg_l, sg_h, sg_p, sA,
    HAS_DH: tl.constexpr, ACC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (b * H, P-blocks): chunks in reverse from dh_last (b, H, P, N; zero if absent);
    gend (b, nc, H, P, N) <- the cotangent of the state leaving each chunk; dh0 <- the first's entering one."""
    pbh = tl.program_id(0).to(tl.int64)
    pp = tl.program_id(1).to(tl.int64)
    pb = pbh // H
    h = pbh % H
    g = h // R
    p = pp * BLOCK_P + tl.arange(0, BLOCK_P).to(tl.int64)
    n = tl.arange(0, BLOCK_N).to(tl.int64)
    p_mask = p < P
    n_mask = n < N
    pn_mask = p_mask[:, None] & n_mask[None, :]
    lane = p[:, None] * N + n[None, :]
    A_h = tl.load(A_ptr + h * sA).to(ACC)
    if HAS_DH:
        Gs = tl.load(dh_ptr + (pb * H + h) * P * N + lane, mask=pn_mask, other=0.0).to(ACC)
    else:
        Gs = tl.zeros([BLOCK_P, BLOCK_N], dtype=ACC)
    for j in range(0, n_chunks):
        c = n_chunks - 1 - j
        tl.store(gend_ptr + ((pb * n_chunks + c) * H + h) * P * N + lane, Gs, mask=pn_mask)
        i, t, t_mask = chunk_rows(c, chunk, L, BLOCK_T)
        dt = load_rows(dt_ptr, pb * sd_b + h * sd_h, t, sd_l, t_mask, ACC)
        dy = load_tile(dy_ptr, pb * sg_b + h * sg_h, t, sg_l, p, sg_p, t_mask, p_mask, ACC)
        C = load_tile(C_ptr, pb * sC_b + g * sC_g, t, sC_l, n, sC_n, t_mask, n_mask, ACC)
        a, aT = log_decays(dt, A_h, i, BLOCK_T)
        Gs = exp(aT) * Gs + dot(tl.trans(dy * exp(a)[:, None]), C)
    tl.store(dh0_ptr + (pb * H + h) * P * N + lane, Gs, mask=pn_mask)


@triton.jit
def _chunk_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, dy_ptr, starts_ptr, gend_ptr,
    dx_ptr, ddt_ptr, dB_ptr, dC_ptr, dA_ptr,
    b, L, H, P, N, R, chunk, n_chunks,
    sx_b, sx_l, sx_h, sx_p, sd_b, sd_l, sd_h, sB_b, sB_l, sB_g, sB_n, sC_b, sC_l, sC_g, sC_n,
    sg_b, sg_l, sg_h, sg_p, sA, sD,
    HAS_D: tl.constexpr, ACC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (chunks, b * H, P-blocks). dx (b, L, H, P); partials per P-block pp:
    ddt (nPB, b, L, H), dB and dC (nPB, b, L, H, N), dA (nPB, b, nc, H); all contiguous."""
    c = tl.program_id(0).to(tl.int64)
    pbh = tl.program_id(1).to(tl.int64)
    pp = tl.program_id(2).to(tl.int64)
    pb = pbh // H
    h = pbh % H
    g = h // R
    p = pp * BLOCK_P + tl.arange(0, BLOCK_P).to(tl.int64)
    n = tl.arange(0, BLOCK_N).to(tl.int64)
    p_mask = p < P
    n_mask = n < N
    i, t, t_mask = chunk_rows(c, chunk, L, BLOCK_T)
    pn_off = ((pb * n_chunks + c) * H + h) * P * N + p[:, None] * N + n[None, :]
    pn_mask = p_mask[:, None] & n_mask[None, :]
    A_h = tl.load(A_ptr + h * sA).to(ACC)
    dt = load_rows(dt_ptr, pb * sd_b + h * sd_h, t, sd_l, t_mask, ACC)
    x = load_tile(x_ptr, pb * sx_b + h * sx_h, t, sx_l, p, sx_p, t_mask, p_mask, ACC)
    dy = load_tile(dy_ptr, pb * sg_b + h * sg_h, t, sg_l, p, sg_p, t_mask, p_mask, ACC)
    B = load_tile(B_ptr, pb * sB_b + g * sB_g, t, sB_l, n, sB_n, t_mask, n_mask, ACC)
    C = load_tile(C_ptr, pb * sC_b + g * sC_g, t, sC_l, n, sC_n, t_mask, n_mask, ACC)
    S_in = tl.load(starts_ptr + pn_off, mask=pn_mask, other=0.0).to(ACC)
    G_out = tl.load(gend_ptr + pn_off, mask=pn_mask, other=0.0).to(ACC)
    a, aT = log_decays(dt, A_h, i, BLOCK_T)
    decay = causal_decay(a, i)
    to_end = exp(aT - a)
    Wm = decay * dot(C, tl.trans(B))  # [t, s]
    GB = dot(B, tl.trans(G_out))  # [s, p]
    gx = dot(tl.trans(Wm), dy) + to_end[:, None] * GB  # d(loss)/d(u)
    dx = dt[:, None] * gx
    if HAS_D:
        dx += tl.load(D_ptr + h * sD).to(ACC) * dy
    DX = dot(dy, tl.trans(x))  # [t, s]
    Q = decay * DX
    dB = dt[:, None] * dot(tl.trans(Q), C) + (dt * to_end)[:, None] * dot(x, G_out)
    dC = dot(Q * dt[None, :], B) + exp(a)[:, None] * dot(dy, S_in)
    # the cotangent of a (the cumulative log-decay), then of dt * A
    V = Wm * DX * dt[None, :]
    U = to_end * dt * tl.sum(x * GB, axis=1)
    da = tl.sum(V, axis=1) - tl.sum(V, axis=0) + exp(a) * tl.sum(dy * dot(C, tl.trans(S_in)), axis=1) - U
    end = tl.sum(U, axis=0) + exp(aT) * tl.sum(tl.sum(G_out * S_in, axis=1), axis=0)
    da = tl.where(i == BLOCK_T - 1, da + end, da)
    rc = tl.cumsum(da, axis=0, reverse=True)
    ddt = tl.sum(x * gx, axis=1) + A_h * rc
    tm = t_mask[:, None] & p_mask[None, :]
    tl.store(dx_ptr + ((pb * L + t[:, None]) * H + h) * P + p[None, :], dx.to(dx_ptr.dtype.element_ty), mask=tm)
    row = (pp * b + pb) * L + t
    tl.store(ddt_ptr + row * H + h, ddt, mask=t_mask)
    tn_off = (row[:, None] * H + h) * N + n[None, :]
    tn_mask = t_mask[:, None] & n_mask[None, :]
    tl.store(dB_ptr + tn_off, dB, mask=tn_mask)
    tl.store(dC_ptr + tn_off, dC, mask=tn_mask)
    tl.store(dA_ptr + ((pp * b + pb) * n_chunks + c) * H + h, tl.sum(dt * rc, axis=0))


def ssd_backward(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    starts: torch.Tensor,
    dy: torch.Tensor | None,
    dh_last: torch.Tensor | None,
    chunk: int | None = None,
    blocks: dict | None = None,
) -> tuple[torch.Tensor, ...]:
    """(dx, ddt, dB, dC, dh0, dA, dD | None) from dy (b, L, H, P) and dh_last (b, H, P, N),
    either None (zero), recomputing from `starts`, the chunk starts `ssd_forward` returned for
    the same `chunk`. dx, ddt, dB, dC in their inputs' dtypes; dh0, dA, dD in the work dtype."""
    b, L, H, P, G, N = check_shapes(x, dt, A, B, C, D, None)
    work = work_dtype(x)
    dev = x.device
    T, n_chunks = plan(dev, L, chunk)
    if starts.shape != (b, n_chunks, H, P, N):
        raise ValueError(f"chunk starts {tuple(starts.shape)} do not match chunk {chunk} (expected {(b, n_chunks, H, P, N)})")
    dy = torch.zeros_like(x) if dy is None else dy
    dD = None if D is None else torch.einsum("blhp,blhp->h", dy.to(work), x.to(work))
    if L == 0 or b * H * P == 0:
        dh0 = dh_last.to(work).clone() if dh_last is not None else torch.zeros(b, H, P, N, dtype=work, device=dev)
        return (torch.zeros_like(x), torch.zeros_like(dt), torch.zeros_like(B), torch.zeros_like(C), dh0,
                torch.zeros(H, dtype=work, device=dev), dD)
    cfg = config(dev, P, N, T, blocks)
    n_pb = triton.cdiv(P, cfg["p"])
    acc = tl.float64 if work == torch.float64 else tl.float32
    meta = dict(ACC=acc, BLOCK_T=cfg["t"], BLOCK_P=cfg["p"], BLOCK_N=cfg["n"], num_warps=cfg["warps"])
    gend = alloc((b, n_chunks, H, P, N), work, dev)
    dh0 = alloc((b, H, P, N), work, dev)
    dhc = dh_last.to(work).contiguous() if dh_last is not None else None
    _states_kernel[(b * H, n_pb)](
        dt, A, C, dy, dhc if dhc is not None else dh0, gend, dh0,
        L, H, P, N, H // G, T, n_chunks,
        *strides(dt, 3), *strides(C, 4), *strides(dy, 4), A.stride(0),
        HAS_DH=dh_last is not None, **meta,
    )
    dx = alloc((b, L, H, P), x.dtype, dev)
    ddt_part = alloc((n_pb, b, L, H), work, dev)
    dB_part = alloc((n_pb, b, L, H, N), work, dev)
    dC_part = alloc((n_pb, b, L, H, N), work, dev)
    dA_part = alloc((n_pb, b, n_chunks, H), work, dev)
    _chunk_kernel[(n_chunks, b * H, n_pb)](
        x, dt, A, B, C, D if D is not None else A, dy, starts, gend,
        dx, ddt_part, dB_part, dC_part, dA_part,
        b, L, H, P, N, H // G, T, n_chunks,
        *strides(x, 4), *strides(dt, 3), *strides(B, 4), *strides(C, 4), *strides(dy, 4), A.stride(0),
        D.stride(0) if D is not None else 0,
        HAS_D=D is not None, **meta,
    )
    # fixed-order reductions (deterministic): over P-blocks, and over the heads of each group
    ddt = ddt_part.sum(0).to(dt.dtype)
    dB = dB_part.sum(0).reshape(b, L, G, H // G, N).sum(3).to(B.dtype)
    dC = dC_part.sum(0).reshape(b, L, G, H // G, N).sum(3).to(C.dtype)
    dA = dA_part.sum((0, 1, 2))
    return dx, ddt, dB, dC, dh0, dA, dD
