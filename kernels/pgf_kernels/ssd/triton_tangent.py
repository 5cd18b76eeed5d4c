"""The SSD scan's Triton tangent (forward mode): K directions sharing one primal, `ssd_tangent`.

Differentiating the chunk form (`triton_forward`) with a' = cumsum(dt' A + dt A') (the tangent
of the cumulative log-decay), u = dt x, u' = dt' x + dt x':

    S'_out = exp(a_T) (a'_T S_in + S'_in)
             + [u * exp(a_T - a) (a'_T - a')  +  u' * exp(a_T - a)]ᵀ B  +  (u * exp(a_T - a))ᵀ B'
    y'     = (decay ∘ C Bᵀ ∘ (a'_t - a'_s)) u + (decay ∘ C Bᵀ) u' + (decay ∘ (C B'ᵀ + C' Bᵀ)) u
             + exp(a) * [a' * (C S_inᵀ) + C S'_inᵀ + C' S_inᵀ]  +  D' x + D x'

The primal chunk starts come from the forward's states kernel; a tangent states kernel walks the
chunks in order per direction, and an output kernel takes every chunk and direction at once.
Absent tangents (None) are zero and not read.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from pgf_kernels.ssd.shapes import check_shapes, work_dtype
from pgf_kernels.ssd.triton_forward import chunk_starts
from pgf_kernels.ssd.triton_util import (
    causal_decay, chunk_rows, config, dot, load_rows, load_tile, log_decays, plan, strides,
)
from pgf_kernels.triton_common import alloc, exp


@triton.jit
def _chunk_inputs(
    k, pb, h, g, c, chunk, L, p, p_mask, n, n_mask,
    x_ptr, dt_ptr, A_ptr, B_ptr, xt_ptr, dtt_ptr, At_ptr, Bt_ptr,
    sx_b, sx_l, sx_h, sx_p, sd_b, sd_l, sd_h, sB_b, sB_l, sB_g, sB_n, sA,
    tx_k, tx_b, tx_l, tx_h, tx_p, td_k, td_b, td_l, td_h, tB_k, tB_b, tB_l, tB_g, tB_n, tA_k, tA_h,
    HAS_XT: tl.constexpr, HAS_DTT: tl.constexpr, HAS_AT: tl.constexpr, HAS_BT: tl.constexpr,
    ACC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """A chunk's (i, t, t_mask, x, B, B', a, a_T, a', a'_T, u, u') for direction k."""
    i, t, t_mask = chunk_rows(c, chunk, L, BLOCK_T)
    A_h = tl.load(A_ptr + h * sA).to(ACC)
    dt = load_rows(dt_ptr, pb * sd_b + h * sd_h, t, sd_l, t_mask, ACC)
    x = load_tile(x_ptr, pb * sx_b + h * sx_h, t, sx_l, p, sx_p, t_mask, p_mask, ACC)
    B = load_tile(B_ptr, pb * sB_b + g * sB_g, t, sB_l, n, sB_n, t_mask, n_mask, ACC)
    a, aT = log_decays(dt, A_h, i, BLOCK_T)
    u = dt[:, None] * x
    ad_step = tl.zeros([BLOCK_T], dtype=ACC)
    ut = tl.zeros([BLOCK_T, BLOCK_P], dtype=ACC)
    Bt = tl.zeros([BLOCK_T, BLOCK_N], dtype=ACC)
    if HAS_DTT:
        dtt = load_rows(dtt_ptr, k * td_k + pb * td_b + h * td_h, t, td_l, t_mask, ACC)
        ad_step += dtt * A_h
        ut += dtt[:, None] * x
    if HAS_AT:
        ad_step += dt * tl.load(At_ptr + k * tA_k + h * tA_h).to(ACC)
    if HAS_XT:
        ut += dt[:, None] * load_tile(xt_ptr, k * tx_k + pb * tx_b + h * tx_h, t, tx_l, p, tx_p, t_mask, p_mask, ACC)
    if HAS_BT:
        Bt = load_tile(Bt_ptr, k * tB_k + pb * tB_b + g * tB_g, t, tB_l, n, tB_n, t_mask, n_mask, ACC)
    ad, adT = log_decays(ad_step, 1.0, i, BLOCK_T)
    return i, t, t_mask, x, B, Bt, a, aT, ad, adT, u, ut


@triton.jit
def _tangent_states_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, xt_ptr, dtt_ptr, At_ptr, Bt_ptr, h0t_ptr, starts_ptr, tstarts_ptr, hlt_ptr,
    b, L, H, P, N, R, chunk, n_chunks,
    sx_b, sx_l, sx_h, sx_p, sd_b, sd_l, sd_h, sB_b, sB_l, sB_g, sB_n, sA,
    tx_k, tx_b, tx_l, tx_h, tx_p, td_k, td_b, td_l, td_h, tB_k, tB_b, tB_l, tB_g, tB_n, tA_k, tA_h,
    HAS_XT: tl.constexpr, HAS_DTT: tl.constexpr, HAS_AT: tl.constexpr, HAS_BT: tl.constexpr,
    HAS_H0T: tl.constexpr, ACC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (b * H, P-blocks, K). tstarts (K, b, nc, H, P, N) <- the tangent state entering each
    chunk; h_last' (K, b, H, P, N) <- the last's leaving one. h0' (K, b, H, P, N) contiguous."""
    pbh = tl.program_id(0).to(tl.int64)
    pp = tl.program_id(1).to(tl.int64)
    k = tl.program_id(2).to(tl.int64)
    pb = pbh // H
    h = pbh % H
    g = h // R
    p = pp * BLOCK_P + tl.arange(0, BLOCK_P).to(tl.int64)
    n = tl.arange(0, BLOCK_N).to(tl.int64)
    p_mask = p < P
    n_mask = n < N
    pn_mask = p_mask[:, None] & n_mask[None, :]
    lane = p[:, None] * N + n[None, :]
    if HAS_H0T:
        St = tl.load(h0t_ptr + ((k * b + pb) * H + h) * P * N + lane, mask=pn_mask, other=0.0).to(ACC)
    else:
        St = tl.zeros([BLOCK_P, BLOCK_N], dtype=ACC)
    for c in range(0, n_chunks):
        tl.store(tstarts_ptr + (((k * b + pb) * n_chunks + c) * H + h) * P * N + lane, St, mask=pn_mask)
        S_in = tl.load(starts_ptr + ((pb * n_chunks + c) * H + h) * P * N + lane, mask=pn_mask, other=0.0).to(ACC)
        i, t, t_mask, x, B, Bt, a, aT, ad, adT, u, ut = _chunk_inputs(
            k, pb, h, g, c, chunk, L, p, p_mask, n, n_mask,
            x_ptr, dt_ptr, A_ptr, B_ptr, xt_ptr, dtt_ptr, At_ptr, Bt_ptr,
            sx_b, sx_l, sx_h, sx_p, sd_b, sd_l, sd_h, sB_b, sB_l, sB_g, sB_n, sA,
            tx_k, tx_b, tx_l, tx_h, tx_p, td_k, td_b, td_l, td_h, tB_k, tB_b, tB_l, tB_g, tB_n, tA_k, tA_h,
            HAS_XT, HAS_DTT, HAS_AT, HAS_BT, ACC, BLOCK_T, BLOCK_P, BLOCK_N,
        )
        to_end = exp(aT - a)
        drive = u * (to_end * (adT - ad))[:, None] + ut * to_end[:, None]
        St = exp(aT) * (adT * S_in + St) + dot(tl.trans(drive), B)
        if HAS_BT:
            St += dot(tl.trans(u * to_end[:, None]), Bt)
    tl.store(hlt_ptr + ((k * b + pb) * H + h) * P * N + lane, St, mask=pn_mask)


@triton.jit
def _tangent_output_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, xt_ptr, dtt_ptr, At_ptr, Bt_ptr, Ct_ptr, Dt_ptr,
    starts_ptr, tstarts_ptr, yt_ptr,
    b, L, H, P, N, R, chunk, n_chunks, n_pb,
    sx_b, sx_l, sx_h, sx_p, sd_b, sd_l, sd_h, sB_b, sB_l, sB_g, sB_n, sC_b, sC_l, sC_g, sC_n, sA, sD,
    tx_k, tx_b, tx_l, tx_h, tx_p, td_k, td_b, td_l, td_h, tB_k, tB_b, tB_l, tB_g, tB_n,
    tC_k, tC_b, tC_l, tC_g, tC_n, tA_k, tA_h, tD_k, tD_h,
    HAS_D: tl.constexpr, HAS_XT: tl.constexpr, HAS_DTT: tl.constexpr, HAS_AT: tl.constexpr,
    HAS_BT: tl.constexpr, HAS_CT: tl.constexpr, HAS_DT: tl.constexpr, ACC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (chunks, b * H, P-blocks * K): y' (K, b, L, H, P, contiguous) of one chunk and direction."""
    c = tl.program_id(0).to(tl.int64)
    pbh = tl.program_id(1).to(tl.int64)
    pk = tl.program_id(2).to(tl.int64)
    k = pk // n_pb
    pp = pk % n_pb
    pb = pbh // H
    h = pbh % H
    g = h // R
    p = pp * BLOCK_P + tl.arange(0, BLOCK_P).to(tl.int64)
    n = tl.arange(0, BLOCK_N).to(tl.int64)
    p_mask = p < P
    n_mask = n < N
    pn_mask = p_mask[:, None] & n_mask[None, :]
    lane = p[:, None] * N + n[None, :]
    i, t, t_mask, x, B, Bt, a, aT, ad, adT, u, ut = _chunk_inputs(
        k, pb, h, g, c, chunk, L, p, p_mask, n, n_mask,
        x_ptr, dt_ptr, A_ptr, B_ptr, xt_ptr, dtt_ptr, At_ptr, Bt_ptr,
        sx_b, sx_l, sx_h, sx_p, sd_b, sd_l, sd_h, sB_b, sB_l, sB_g, sB_n, sA,
        tx_k, tx_b, tx_l, tx_h, tx_p, td_k, td_b, td_l, td_h, tB_k, tB_b, tB_l, tB_g, tB_n, tA_k, tA_h,
        HAS_XT, HAS_DTT, HAS_AT, HAS_BT, ACC, BLOCK_T, BLOCK_P, BLOCK_N,
    )
    C = load_tile(C_ptr, pb * sC_b + g * sC_g, t, sC_l, n, sC_n, t_mask, n_mask, ACC)
    S_in = tl.load(starts_ptr + ((pb * n_chunks + c) * H + h) * P * N + lane, mask=pn_mask, other=0.0).to(ACC)
    St_in = tl.load(tstarts_ptr + (((k * b + pb) * n_chunks + c) * H + h) * P * N + lane, mask=pn_mask, other=0.0).to(ACC)
    decay = causal_decay(a, i)
    Wm = decay * dot(C, tl.trans(B))
    yt = dot(Wm * (ad[:, None] - ad[None, :]), u) + dot(Wm, ut)
    cross = tl.zeros([BLOCK_T, BLOCK_T], dtype=ACC)
    from_start = ad[:, None] * dot(C, tl.trans(S_in)) + dot(C, tl.trans(St_in))
    if HAS_BT:
        cross += dot(C, tl.trans(Bt))
    if HAS_CT:
        Ct = load_tile(Ct_ptr, k * tC_k + pb * tC_b + g * tC_g, t, tC_l, n, tC_n, t_mask, n_mask, ACC)
        cross += dot(Ct, tl.trans(B))
        from_start += dot(Ct, tl.trans(S_in))
    if HAS_BT or HAS_CT:
        yt += dot(decay * cross, u)
    yt += exp(a)[:, None] * from_start
    if HAS_DT:
        yt += tl.load(Dt_ptr + k * tD_k + h * tD_h).to(ACC) * x
    if HAS_D and HAS_XT:
        xt = load_tile(xt_ptr, k * tx_k + pb * tx_b + h * tx_h, t, tx_l, p, tx_p, t_mask, p_mask, ACC)
        yt += tl.load(D_ptr + h * sD).to(ACC) * xt
    tl.store(yt_ptr + (((k * b + pb) * L + t[:, None]) * H + h) * P + p[None, :], yt.to(yt_ptr.dtype.element_ty),
             mask=t_mask[:, None] & p_mask[None, :])


def ssd_tangent(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    h0: torch.Tensor | None,
    tangents,
    K: int | None = None,
    chunk: int | None = None,
    blocks: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y' (K, b, L, H, P) in x's dtype, h_last' (K, b, H, P, N) in the work dtype) for
    `tangents` = (x', dt', A', B', C', D', h0'), each with a leading K (directions) or None (zero)."""
    b, L, H, P, G, N = check_shapes(x, dt, A, B, C, D, h0)
    xt, dtt, At, Bt, Ct, Dt, h0t = tangents
    K = K or next((t.shape[0] for t in tangents if t is not None), 1)
    work = work_dtype(x)
    dev = x.device
    T, n_chunks = plan(dev, L, chunk)
    if L == 0 or b * H * P == 0 or K == 0:
        h_t = h0t.to(work).clone() if h0t is not None else torch.zeros(K, b, H, P, N, dtype=work, device=dev)
        return x.new_zeros(K, b, L, H, P), h_t
    cfg = config(dev, P, N, T, blocks)
    n_pb = triton.cdiv(P, cfg["p"])
    meta = dict(ACC=tl.float64 if work == torch.float64 else tl.float32,
                BLOCK_T=cfg["t"], BLOCK_P=cfg["p"], BLOCK_N=cfg["n"], num_warps=cfg["warps"])
    starts, _ = chunk_starts(x, dt, A, B, h0, T, n_chunks, cfg)
    tstarts = alloc((K, b, n_chunks, H, P, N), work, dev)
    h_t = alloc((K, b, H, P, N), work, dev)
    h0tc = h0t.to(work).contiguous() if h0t is not None else None
    primal_strides = (*strides(x, 4), *strides(dt, 3), *strides(B, 4))
    tangent_strides = (*strides(xt, 5), *strides(dtt, 4), *strides(Bt, 5))
    flags = dict(HAS_XT=xt is not None, HAS_DTT=dtt is not None, HAS_AT=At is not None, HAS_BT=Bt is not None)
    some = lambda t: t if t is not None else x  # noqa: E731 (a pointer a kernel never reads)
    _tangent_states_kernel[(b * H, n_pb, K)](
        x, dt, A, B, some(xt), some(dtt), some(At), some(Bt), some(h0tc), starts, tstarts, h_t,
        b, L, H, P, N, H // G, T, n_chunks,
        *primal_strides, A.stride(0), *tangent_strides, *strides(At, 2),
        HAS_H0T=h0t is not None, **flags, **meta,
    )
    yt = alloc((K, b, L, H, P), x.dtype, dev)
    _tangent_output_kernel[(n_chunks, b * H, n_pb * K)](
        x, dt, A, B, C, some(D), some(xt), some(dtt), some(At), some(Bt), some(Ct), some(Dt),
        starts, tstarts, yt,
        b, L, H, P, N, H // G, T, n_chunks, n_pb,
        *primal_strides, *strides(C, 4), A.stride(0), D.stride(0) if D is not None else 0,
        *tangent_strides, *strides(Ct, 5), *strides(At, 2), *strides(Dt, 2),
        HAS_D=D is not None, HAS_CT=Ct is not None, HAS_DT=Dt is not None, **flags, **meta,
    )
    return yt, h_t
