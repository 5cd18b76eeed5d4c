"""The selective scan's Triton forward: kernels (chunk pass, carry pass) and `scan_forward`.

The algorithm is described in `pgf_kernels.scan.triton`. `carry_kernel` also serves the adjoint.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from pgf_kernels.scan.triton_util import affine_combine, check_shapes, config, default_chunk, strides3
from pgf_kernels.triton_common import alloc, exp, sigmoid, work_dtypes


@triton.jit
def _fwd_chunk_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr,
    start_ptr, y_ptr, end_ptr, sdt_ptr, hout_ptr,
    L, E, N, chunk, n_chunks,
    sx_b, sx_l, sx_e, sd_b, sd_l, sd_e, sz_b, sz_l, sz_e,
    sB_b, sB_l, sB_n, sC_b, sC_l, sC_n, sA_e, sA_n, sD_e,
    LOCAL: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, ACC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (chunks, E-blocks, b); the chunk is a [BLOCK_T, BLOCK_E, BLOCK_N] block.
    LOCAL: the chunk's end state from zero, sum_s exp(A S_s) delta_s x_s B_s with S_s the sum
    of delta after s (exponents <= 0), into end (b, nc, E, N), and sum(delta) into sdt
    (b, nc, E). Else: states from start (b, nc, E, N) by an associative scan; write y
    (b, L, E) and, for the last chunk, h_out (b, E, N)."""
    c = tl.program_id(0).to(tl.int64)
    pe = tl.program_id(1).to(tl.int64)
    pb = tl.program_id(2).to(tl.int64)
    i = tl.arange(0, BLOCK_T).to(tl.int64)
    e = pe * BLOCK_E + tl.arange(0, BLOCK_E).to(tl.int64)
    n = tl.arange(0, BLOCK_N).to(tl.int64)
    t = c * chunk + i
    t_mask = (i < chunk) & (t < L)
    e_mask = e < E
    n_mask = n < N
    en_mask = e_mask[:, None] & n_mask[None, :]
    te = t_mask[:, None] & e_mask[None, :]
    tn = t_mask[:, None] & n_mask[None, :]
    A = tl.load(A_ptr + e[:, None] * sA_e + n[None, :] * sA_n, mask=en_mask, other=0.0).to(ACC)[None, :, :]
    dt = tl.load(dt_ptr + pb * sd_b + t[:, None] * sd_l + e[None, :] * sd_e, mask=te, other=0.0).to(ACC)
    xv = tl.load(x_ptr + pb * sx_b + t[:, None] * sx_l + e[None, :] * sx_e, mask=te, other=0.0).to(ACC)
    Bv = tl.load(B_ptr + pb * sB_b + t[:, None] * sB_l + n[None, :] * sB_n, mask=tn, other=0.0).to(ACC)
    drive = (dt * xv)[:, :, None] * Bv[:, None, :]
    state_off = ((pb * n_chunks + c) * E + e[:, None]) * N + n[None, :]
    if LOCAL:
        nm = (i + 1 < chunk) & (t + 1 < L)
        dtn = tl.load(dt_ptr + pb * sd_b + (t + 1)[:, None] * sd_l + e[None, :] * sd_e,
                      mask=nm[:, None] & e_mask[None, :], other=0.0).to(ACC)
        after = tl.cumsum(dtn, axis=0, reverse=True)  # sum of delta strictly after each position
        tl.store(end_ptr + state_off, tl.sum(exp(after[:, :, None] * A) * drive, axis=0), mask=en_mask)
        tl.store(sdt_ptr + (pb * n_chunks + c) * E + e, tl.sum(dt, axis=0), mask=e_mask)
    else:
        h_start = tl.load(start_ptr + state_off, mask=en_mask, other=0.0).to(ACC)
        a = exp(dt[:, :, None] * A)  # padded rows: a = 1, drive = 0 (the state carries through)
        drive = tl.where((i == 0)[:, None, None], drive + a * h_start[None, :, :], drive)
        _, h = tl.associative_scan((a, drive), 0, affine_combine)
        Cv = tl.load(C_ptr + pb * sC_b + t[:, None] * sC_l + n[None, :] * sC_n, mask=tn, other=0.0).to(ACC)
        u = tl.sum(h * Cv[:, None, :], axis=2)
        if HAS_D:
            u += tl.load(D_ptr + e * sD_e, mask=e_mask, other=0.0).to(ACC)[None, :] * xv
        if HAS_Z:
            zv = tl.load(z_ptr + pb * sz_b + t[:, None] * sz_l + e[None, :] * sz_e, mask=te, other=0.0).to(ACC)
            u = u * zv * sigmoid(zv)
        tl.store(y_ptr + (pb * L + t[:, None]) * E + e[None, :], u.to(y_ptr.dtype.element_ty), mask=te)
        # masks are built from blocks: the interpreter mis-types splatted scalar comparisons
        last = (e * 0 + c) == n_chunks - 1
        h_end = tl.sum(tl.where((i == BLOCK_T - 1)[:, None, None], h, 0.0), axis=0)
        tl.store(hout_ptr + (pb * E + e[:, None]) * N + n[None, :], h_end, mask=en_mask & last[:, None])


@triton.jit
def carry_kernel(
    sdt_ptr, loc_ptr, A_ptr, init_ptr, out_ptr, final_ptr,
    E, N, n_chunks, sA_e, sA_n,
    HAS_INIT: tl.constexpr, REVERSE: tl.constexpr, WRITE_FINAL: tl.constexpr, ACC: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (E-blocks, b). Chunk c maps a state s to P_c s + loc_c, P_c = exp(A sum(delta)_c).
    Forward: out[c] = state before chunk c, from init (b, E, N) (h0; zero if absent).
    REVERSE: out[c] = cotangent after chunk c, from init (dh_out), and final = cotangent
    before chunk 0 (dh0). Blocks of BLOCK_C chunks by an associative scan, blocks in sequence.
    sdt (b, nc, E), loc/out (b, nc, E, N), init/final (b, E, N) contiguous."""
    pe = tl.program_id(0).to(tl.int64)
    pb = tl.program_id(1).to(tl.int64)
    e = pe * BLOCK_E + tl.arange(0, BLOCK_E).to(tl.int64)
    n = tl.arange(0, BLOCK_N).to(tl.int64)
    cc = tl.arange(0, BLOCK_C).to(tl.int64)
    e_mask = e < E
    en_mask = e_mask[:, None] & (n < N)[None, :]
    A = tl.load(A_ptr + e[:, None] * sA_e + n[None, :] * sA_n, mask=en_mask, other=0.0).to(ACC)
    lane = (pb * E + e[:, None]) * N + n[None, :]
    if HAS_INIT:
        carry = tl.load(init_ptr + lane, mask=en_mask, other=0.0).to(ACC)
    else:
        carry = tl.zeros([BLOCK_E, BLOCK_N], dtype=ACC)
    n_blocks = tl.cdiv(n_chunks, BLOCK_C)
    for j in range(0, n_blocks):
        if REVERSE:
            first = (n_blocks - 1 - j) * BLOCK_C
        else:
            first = j * BLOCK_C
        c = first + cc
        c_mask = c < n_chunks
        m3 = c_mask[:, None, None] & en_mask[None, :, :]
        sdt = tl.load(sdt_ptr + (pb * n_chunks + c[:, None]) * E + e[None, :],
                      mask=c_mask[:, None] & e_mask[None, :], other=0.0).to(ACC)
        P = exp(sdt[:, :, None] * A[None, :, :])  # padded chunks: P = 1, loc = 0 (identity)
        off3 = ((pb * n_chunks + c[:, None, None]) * E + e[None, :, None]) * N + n[None, None, :]
        loc = tl.load(loc_ptr + off3, mask=m3, other=0.0).to(ACC)
        if REVERSE:
            Pc, Lc = tl.associative_scan((P, loc), 0, affine_combine, reverse=True)
            val = Pc * carry[None, :, :] + Lc  # cotangent before chunk c = after chunk c - 1
            tl.store(out_ptr + off3 - E * N, val, mask=m3 & (cc >= 1)[:, None, None])
            last = tl.minimum(first + BLOCK_C, n_chunks) - 1
            tl.store(out_ptr + ((pb * n_chunks + last) * E + e[:, None]) * N + n[None, :], carry, mask=en_mask)
            carry = tl.sum(tl.where((cc == 0)[:, None, None], val, 0.0), axis=0)
        else:
            Pc, Lc = tl.associative_scan((P, loc), 0, affine_combine)
            val = Pc * carry[None, :, :] + Lc  # state after chunk c = before chunk c + 1
            tl.store(out_ptr + off3 + E * N, val, mask=m3 & (cc + 1 < BLOCK_C)[:, None, None] & (c + 1 < n_chunks)[:, None, None])
            tl.store(out_ptr + ((pb * n_chunks + first) * E + e[:, None]) * N + n[None, :], carry, mask=en_mask)
            carry = tl.sum(tl.where((cc == BLOCK_C - 1)[:, None, None], val, 0.0), axis=0)
    if WRITE_FINAL:
        tl.store(final_ptr + lane, carry, mask=en_mask)


def _chunk_starts(x, delta, A, B, h0, chunk, n_chunks, cfg, work, tl_work):
    """Passes 1 and 2 of the forward: every chunk's start state (b, nc, E, N)."""
    b, L, E = x.shape
    N = A.shape[1]
    starts = alloc((b, n_chunks, E, N), work, x.device)
    if n_chunks == 1:
        if h0 is None:
            starts.zero_()
        else:
            starts[:, 0].copy_(h0)
        return starts
    local = alloc((b, n_chunks, E, N), work, x.device)
    sdt = alloc((b, n_chunks, E), work, x.device)
    BE = cfg["fwd_e"]
    _fwd_chunk_kernel[(n_chunks, triton.cdiv(E, BE), b)](
        x, delta, A, B, B, x, x, local, x, local, sdt, local,
        L, E, N, chunk, n_chunks,
        *strides3(x), *strides3(delta), 0, 0, 0, *strides3(B), 0, 0, 0, *A.stride(), 0,
        LOCAL=True, HAS_D=False, HAS_Z=False, ACC=tl_work,
        BLOCK_T=cfg["t"], BLOCK_E=BE, BLOCK_N=cfg["n"], num_warps=cfg["warps_fwd"],
    )
    init = h0.contiguous() if h0 is not None else sdt
    BE2 = cfg["carry_e"]
    carry_kernel[(triton.cdiv(E, BE2), b)](
        sdt, local, A, init, starts, starts, E, N, n_chunks, *A.stride(),
        HAS_INIT=h0 is not None, REVERSE=False, WRITE_FINAL=False, ACC=tl_work,
        BLOCK_C=cfg["carry_c"], BLOCK_E=BE2, BLOCK_N=cfg["n"], num_warps=cfg["warps_carry"],
    )
    return starts


def scan_forward(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    chunk: int | None = None,
    blocks: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y (b, L, E) in x's dtype, h_last (b, E, N) fp32/fp64, chunk starts (b, nc, E, N)).

    The chunk starts are what the adjoint needs to recompute states (1/chunk of L x E x N)."""
    b, L, E, N = check_shapes(x, delta, A, B, C, D, z, h0)
    work, tl_work = work_dtypes(x)
    chunk = chunk or default_chunk(x.device)
    n_chunks = max(1, triton.cdiv(L, chunk))
    if L == 0 or b == 0 or E == 0:
        h_last = h0.to(work).clone() if h0 is not None else torch.zeros(b, E, N, dtype=work, device=x.device)
        starts = h_last.unsqueeze(1).clone()
        return x.new_empty(b, L, E), h_last, starts
    cfg = config(x.device, E, N, chunk, n_chunks, blocks=blocks)
    starts = _chunk_starts(x, delta, A, B, h0, chunk, n_chunks, cfg, work, tl_work)
    y = alloc((b, L, E), x.dtype, x.device)
    h_last = alloc((b, E, N), work, x.device)
    BE = cfg["fwd_e"]
    _fwd_chunk_kernel[(n_chunks, triton.cdiv(E, BE), b)](
        x, delta, A, B, C, D if D is not None else x, z if z is not None else x,
        starts, y, starts, starts, h_last,
        L, E, N, chunk, n_chunks,
        *strides3(x), *strides3(delta), *strides3(z), *strides3(B), *strides3(C), *A.stride(), D.stride(0) if D is not None else 0,
        LOCAL=False, HAS_D=D is not None, HAS_Z=z is not None, ACC=tl_work,
        BLOCK_T=cfg["t"], BLOCK_E=BE, BLOCK_N=cfg["n"], num_warps=cfg["warps_fwd"],
    )
    return y, h_last, starts
