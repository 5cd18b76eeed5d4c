"""The SSD scan's Triton forward: a states kernel (sequential over chunks) and an output kernel
(parallel over chunks), and `ssd_forward`.

Per (batch row, head, P-block) the states kernel walks the chunks in order, storing the state
entering each (the chunk starts, also the adjoint's residual) and updating it with the chunk's
contribution, one [P, T] @ [T, N] product:  S <- exp(a_T) S + (x * dt * exp(a_T - a))ᵀ B.
The output kernel then takes every chunk at once:
y = (decay ∘ C Bᵀ ∘ dt) @ x + exp(a) * (C @ S_inᵀ) + D x, two products of the chunk's tiles.
Rows of S (the P axis) evolve independently, so P is split into blocks across programs.
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
    x_ptr, dt_ptr, A_ptr, B_ptr, h0_ptr, starts_ptr, hlast_ptr,
    L, H, P, N, R, chunk, n_chunks,
    sx_b, sx_l, sx_h, sx_p, sd_b, sd_l, sd_h, sB_b, sB_l, sB_g, sB_n, sA,
    HAS_H0: tl.constexpr, ACC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (b * H, P-blocks). starts (b, nc, H, P, N) <- the state entering each chunk;
    h_last (b, H, P, N) <- the state after the last. h0 (b, H, P, N) contiguous."""
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
    if HAS_H0:
        S = tl.load(h0_ptr + (pb * H + h) * P * N + lane, mask=pn_mask, other=0.0).to(ACC)
    else:
        S = tl.zeros([BLOCK_P, BLOCK_N], dtype=ACC)
    for c in range(0, n_chunks):
        tl.store(starts_ptr + ((pb * n_chunks + c) * H + h) * P * N + lane, S, mask=pn_mask)
        i, t, t_mask = chunk_rows(c, chunk, L, BLOCK_T)
        dt = load_rows(dt_ptr, pb * sd_b + h * sd_h, t, sd_l, t_mask, ACC)
        x = load_tile(x_ptr, pb * sx_b + h * sx_h, t, sx_l, p, sx_p, t_mask, p_mask, ACC)
        B = load_tile(B_ptr, pb * sB_b + g * sB_g, t, sB_l, n, sB_n, t_mask, n_mask, ACC)
        a, aT = log_decays(dt, A_h, i, BLOCK_T)
        w = dt * exp(aT - a)
        S = exp(aT) * S + dot(tl.trans(x * w[:, None]), B)
    tl.store(hlast_ptr + (pb * H + h) * P * N + lane, S, mask=pn_mask)


@triton.jit
def _output_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, starts_ptr, y_ptr,
    L, H, P, N, R, chunk, n_chunks,
    sx_b, sx_l, sx_h, sx_p, sd_b, sd_l, sd_h, sB_b, sB_l, sB_g, sB_n, sC_b, sC_l, sC_g, sC_n, sA, sD,
    HAS_D: tl.constexpr, ACC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (chunks, b * H, P-blocks): y (b, L, H, P, contiguous) of one chunk from its start state."""
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
    A_h = tl.load(A_ptr + h * sA).to(ACC)
    dt = load_rows(dt_ptr, pb * sd_b + h * sd_h, t, sd_l, t_mask, ACC)
    x = load_tile(x_ptr, pb * sx_b + h * sx_h, t, sx_l, p, sx_p, t_mask, p_mask, ACC)
    B = load_tile(B_ptr, pb * sB_b + g * sB_g, t, sB_l, n, sB_n, t_mask, n_mask, ACC)
    C = load_tile(C_ptr, pb * sC_b + g * sC_g, t, sC_l, n, sC_n, t_mask, n_mask, ACC)
    S_in = tl.load(starts_ptr + ((pb * n_chunks + c) * H + h) * P * N + p[:, None] * N + n[None, :],
                   mask=p_mask[:, None] & n_mask[None, :], other=0.0).to(ACC)
    a, _ = log_decays(dt, A_h, i, BLOCK_T)
    W = causal_decay(a, i) * dot(C, tl.trans(B)) * dt[None, :]
    y = dot(W, x) + exp(a)[:, None] * dot(C, tl.trans(S_in))
    if HAS_D:
        y += tl.load(D_ptr + h * sD).to(ACC) * x
    tl.store(y_ptr + ((pb * L + t[:, None]) * H + h) * P + p[None, :], y.to(y_ptr.dtype.element_ty),
             mask=t_mask[:, None] & p_mask[None, :])


def chunk_starts(x, dt, A, B, h0, T, n_chunks, cfg):
    """(chunk starts (b, nc, H, P, N), h_last (b, H, P, N)), both in the work dtype."""
    b, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    work = work_dtype(x)
    starts = alloc((b, n_chunks, H, P, N), work, x.device)
    h_last = alloc((b, H, P, N), work, x.device)
    h0c = h0.to(work).contiguous() if h0 is not None else None
    _states_kernel[(b * H, triton.cdiv(P, cfg["p"]))](
        x, dt, A, B, h0c if h0c is not None else starts, starts, h_last,
        L, H, P, N, H // G, T, n_chunks,
        *strides(x, 4), *strides(dt, 3), *strides(B, 4), A.stride(0),
        HAS_H0=h0 is not None, ACC=tl.float64 if work == torch.float64 else tl.float32,
        BLOCK_T=cfg["t"], BLOCK_P=cfg["p"], BLOCK_N=cfg["n"], num_warps=cfg["warps"],
    )
    return starts, h_last


def ssd_forward(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    chunk: int | None = None,
    blocks: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y (b, L, H, P) in x's dtype, h_last (b, H, P, N), chunk starts (b, nc, H, P, N)), the
    states in the work dtype; the starts are what `ssd_backward` needs (1/chunk of the states)."""
    b, L, H, P, G, N = check_shapes(x, dt, A, B, C, D, h0)
    work = work_dtype(x)
    T, n_chunks = plan(x.device, L, chunk)
    if L == 0 or b * H * P == 0:
        h_last = h0.to(work).clone() if h0 is not None else torch.zeros(b, H, P, N, dtype=work, device=x.device)
        return x.new_zeros(b, L, H, P), h_last, h_last.unsqueeze(1).clone()
    cfg = config(x.device, P, N, T, blocks)
    starts, h_last = chunk_starts(x, dt, A, B, h0, T, n_chunks, cfg)
    y = alloc((b, L, H, P), x.dtype, x.device)
    _output_kernel[(n_chunks, b * H, triton.cdiv(P, cfg["p"]))](
        x, dt, A, B, C, D if D is not None else A, starts, y,
        L, H, P, N, H // G, T, n_chunks,
        *strides(x, 4), *strides(dt, 3), *strides(B, 4), *strides(C, 4), A.stride(0),
        D.stride(0) if D is not None else 0,
        HAS_D=D is not None, ACC=tl.float64 if work == torch.float64 else tl.float32,
        BLOCK_T=cfg["t"], BLOCK_P=cfg["p"], BLOCK_N=cfg["n"], num_warps=cfg["warps"],
    )
    return y, h_last, starts
