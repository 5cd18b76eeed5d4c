"""Triton selective scan with state in and out: forward, tangent (JVP) and adjoint (VJP).

Layout (batch first, as `selective_scan_ref`):
    x, delta, z : (b, L, E)     B, C : (b, L, N)     A : (E, N)     D : (E,)
    h0, h_last  : (b, E, N)     tangents carry a leading K (directions sharing one primal)

Recurrence:  a_t = exp(delta_t A);  h_t = a_t h_{t-1} + delta_t x_t B_t;
             y_t = (C_t . h_t + D x_t) * silu(z_t)

Every kernel is parallel over sequence chunks as well as channel blocks, in three passes:
  1. each chunk from a zero state: its local end state and sum(delta) (its total decay is
     P = exp(A sum(delta)) <= 1),
  2. a short pass over chunks (an associative scan over blocks of chunks, sequential across
     blocks) giving every chunk's start state (mirrored for the adjoint: every chunk's end
     cotangent, right to left),
  3. each chunk again from its start state, writing the outputs.
A program holds its chunk as a [BLOCK_T, BLOCK_E, BLOCK_N] block (tangents
[BLOCK_T, BLOCK_K, BLOCK_E, BLOCK_N]): the states by an associative scan over T of
(decay, drive) pairs from the chunk-start state, the adjoint's state cotangents by a reversed
scan from the chunk-end cotangent, so (L, E, N) is never materialised; only the chunk starts
(b, L/chunk, E, N) are, and the forward returns them for the adjoint. Pass 1 needs no scan:
the end state is sum_s exp(A S_s) drive_s with S_s the sum of delta after s. Only
non-positive numbers are exponentiated (no division by decays); states and sums are fp32
(fp64 for fp64 inputs); offsets are int64; dB and dC are summed over channels on chip and
the per-group partials by torch in a fixed order (no atomics: deterministic).

Runs on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 was set before this module
was imported (slow; for tests).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

# Tests set this so every output and scratch buffer starts as NaN: a forgotten write fails.
NAN_FILL = False


def interpreted() -> bool:
    """True when these kernels were built for the Triton interpreter (they run on CPU tensors)."""
    return type(_fwd_chunk_kernel).__name__ == "InterpretedFunction"


def _alloc(shape, dtype, device) -> torch.Tensor:
    if NAN_FILL:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _acc(x: torch.Tensor) -> tuple[torch.dtype, object]:
    """Work dtype: fp64 for fp64 inputs, fp32 otherwise (as the reference promotes)."""
    return (torch.float64, tl.float64) if x.dtype == torch.float64 else (torch.float32, tl.float32)


def default_chunk(device: torch.device) -> int:
    """Positions per chunk. On CUDA a chunk's [chunk, BLOCK_E, N] states stay in registers;
    in the interpreter (CPU) short chunks waste less padding on short tiles."""
    return 64 if device.type == "cuda" else 16


@functools.lru_cache(maxsize=None)
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _config(device: torch.device, E: int, N: int, chunk: int, n_chunks: int, K: int = 1, blocks: dict | None = None) -> dict:
    """Block sizes (powers of two), warps, and the program count the adjoint aims for.

    On CUDA a chunk block [T, BLOCK_E, N] ([T, BLOCK_K, BLOCK_E, N] for tangents) is sized to
    stay in registers (untuned guesses: `blocks` overrides any of them, e.g. from
    bench/kernel_scan.py --blocks). In the interpreter bigger blocks mean fewer programs and
    less Python. Tests use `blocks` to force several E-, K- and chunk blocks."""
    BN, BT = _pow2(N), _pow2(chunk)
    if device.type == "cuda":
        BK = min(_pow2(K), 2)
        cfg = {
            "fwd_e": min(_pow2(E), max(1, 8192 // (BT * BN))),
            "bwd_e": min(_pow2(E), max(1, 4096 // (BT * BN))),
            "tan_e": min(_pow2(E), max(1, 4096 // (BT * BK * BN))),
            "k": BK,
            "carry_e": min(_pow2(E), max(1, 256 // BN)),
            "carry_c": min(_pow2(n_chunks), 16),
            "warps_fwd": 8,
            "warps_bwd": 4,
            "warps_tan": 4,
            "warps_carry": 4,
            "programs": 8 * _multiprocessors(device.index if device.index is not None else torch.cuda.current_device()),
            "bwd_groups": 0,
        }
    else:
        cfg = {
            "fwd_e": min(_pow2(E), 64),
            "bwd_e": min(_pow2(E), 64),
            "tan_e": min(_pow2(E), 64),
            "k": min(_pow2(K), 16),
            "carry_e": min(_pow2(E), 64),
            "carry_c": min(_pow2(n_chunks), 64),
            "warps_fwd": 1,
            "warps_bwd": 1,
            "warps_tan": 1,
            "warps_carry": 1,
            "programs": 1,
            "bwd_groups": 0,
        }
    for key, value in (blocks or {}).items():
        if key not in cfg:
            raise KeyError(f"unknown block setting {key!r}; known: {', '.join(cfg)}")
        if key not in ("programs", "bwd_groups") and (value < 1 or value & (value - 1)):
            raise ValueError(f"block setting {key} must be a power of two, got {value}")
        cfg[key] = value
    cfg["n"], cfg["t"] = BN, BT
    return cfg


# ----------------------------------------------------------------------------------------------
# device functions


@triton.jit
def _affine_combine(a1, b1, a2, b2):
    """(a1, b1) then (a2, b2), as maps h -> a h + b: h -> a2 (a1 h + b1) + b2."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _tangent_combine(p1, q1, l1, m1, p2, q2, l2, m2):
    """Chunk maps on (h, h'): h -> p h + l, h' -> p h' + p q h + m; (1) then (2)."""
    return p1 * p2, q1 + q2, p2 * l1 + l2, p2 * m1 + p2 * q2 * l1 + m2


@triton.jit
def _exp(x):
    if _PRECISE_EXP:
        return libdevice.exp(x)
    else:
        return tl.exp(x)


@triton.jit
def _sigmoid(z):
    return 1.0 / (1.0 + _exp(-z))


# ----------------------------------------------------------------------------------------------
# forward


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
        tl.store(end_ptr + state_off, tl.sum(_exp(after[:, :, None] * A) * drive, axis=0), mask=en_mask)
        tl.store(sdt_ptr + (pb * n_chunks + c) * E + e, tl.sum(dt, axis=0), mask=e_mask)
    else:
        h_start = tl.load(start_ptr + state_off, mask=en_mask, other=0.0).to(ACC)
        a = _exp(dt[:, :, None] * A)  # padded rows: a = 1, drive = 0 (the state carries through)
        drive = tl.where((i == 0)[:, None, None], drive + a * h_start[None, :, :], drive)
        _, h = tl.associative_scan((a, drive), 0, _affine_combine)
        Cv = tl.load(C_ptr + pb * sC_b + t[:, None] * sC_l + n[None, :] * sC_n, mask=tn, other=0.0).to(ACC)
        u = tl.sum(h * Cv[:, None, :], axis=2)
        if HAS_D:
            u += tl.load(D_ptr + e * sD_e, mask=e_mask, other=0.0).to(ACC)[None, :] * xv
        if HAS_Z:
            zv = tl.load(z_ptr + pb * sz_b + t[:, None] * sz_l + e[None, :] * sz_e, mask=te, other=0.0).to(ACC)
            u = u * zv * _sigmoid(zv)
        tl.store(y_ptr + (pb * L + t[:, None]) * E + e[None, :], u.to(y_ptr.dtype.element_ty), mask=te)
        # masks are built from blocks: the interpreter mis-types splatted scalar comparisons
        last = (e * 0 + c) == n_chunks - 1
        h_end = tl.sum(tl.where((i == BLOCK_T - 1)[:, None, None], h, 0.0), axis=0)
        tl.store(hout_ptr + (pb * E + e[:, None]) * N + n[None, :], h_end, mask=en_mask & last[:, None])


@triton.jit
def _carry_kernel(
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
        P = _exp(sdt[:, :, None] * A[None, :, :])  # padded chunks: P = 1, loc = 0 (identity)
        off3 = ((pb * n_chunks + c[:, None, None]) * E + e[None, :, None]) * N + n[None, None, :]
        loc = tl.load(loc_ptr + off3, mask=m3, other=0.0).to(ACC)
        if REVERSE:
            Pc, Lc = tl.associative_scan((P, loc), 0, _affine_combine, reverse=True)
            val = Pc * carry[None, :, :] + Lc  # cotangent before chunk c = after chunk c - 1
            tl.store(out_ptr + off3 - E * N, val, mask=m3 & (cc >= 1)[:, None, None])
            last = tl.minimum(first + BLOCK_C, n_chunks) - 1
            tl.store(out_ptr + ((pb * n_chunks + last) * E + e[:, None]) * N + n[None, :], carry, mask=en_mask)
            carry = tl.sum(tl.where((cc == 0)[:, None, None], val, 0.0), axis=0)
        else:
            Pc, Lc = tl.associative_scan((P, loc), 0, _affine_combine)
            val = Pc * carry[None, :, :] + Lc  # state after chunk c = before chunk c + 1
            tl.store(out_ptr + off3 + E * N, val, mask=m3 & (cc + 1 < BLOCK_C)[:, None, None] & (c + 1 < n_chunks)[:, None, None])
            tl.store(out_ptr + ((pb * n_chunks + first) * E + e[:, None]) * N + n[None, :], carry, mask=en_mask)
            carry = tl.sum(tl.where((cc == BLOCK_C - 1)[:, None, None], val, 0.0), axis=0)
    if WRITE_FINAL:
        tl.store(final_ptr + lane, carry, mask=en_mask)


# ----------------------------------------------------------------------------------------------
# tangent (forward mode)


@triton.jit
def _tan_chunk_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr,
    xd_ptr, dtd_ptr, Ad_ptr, Bd_ptr, Cd_ptr, Dd_ptr, zd_ptr,
    start_ptr, startd_ptr, y_ptr, yd_ptr, end_ptr, endd_ptr, sdt_ptr, sdtd_ptr, hout_ptr, houtd_ptr,
    L, E, N, K, chunk, n_chunks, batch,
    sx_b, sx_l, sx_e, sd_b, sd_l, sd_e, sz_b, sz_l, sz_e,
    sB_b, sB_l, sB_n, sC_b, sC_l, sC_n, sA_e, sA_n, sD_e,
    tx_k, tx_b, tx_l, tx_e, td_k, td_b, td_l, td_e, tz_k, tz_b, tz_l, tz_e,
    tB_k, tB_b, tB_l, tB_n, tC_k, tC_b, tC_l, tC_n,
    LOCAL: tl.constexpr, WRITE_PRIMAL: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_XD: tl.constexpr, HAS_DTD: tl.constexpr, HAS_AD: tl.constexpr, HAS_BD: tl.constexpr,
    HAS_CD: tl.constexpr, HAS_DD: tl.constexpr, HAS_ZD: tl.constexpr, ACC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (chunks, E-blocks, b * K-blocks); blocks [T, E, N] (primal) and [T, K, E, N]
    (tangents). h_{t-1} by an associative scan from the chunk start; the tangent drive
    r_t = a_t h_{t-1} (delta'_t A + delta_t A') + (delta'_t x_t + delta_t x'_t) B_t
    + delta_t x_t B'_t, and h'_t = a_t h'_{t-1} + r_t.
    LOCAL: from zero, write the end states (h from the scan, h' = sum_s exp(A S_s) r_s with S_s
    the sum of delta after s), sum(delta) and sum(delta') per chunk. Else: h' by a second scan
    from the chunk starts; write y' (K, b, L, E) (and y), and the last chunk's h_out'.
    Primal outputs are written by K-block 0 only. Ad (K, E, N), Dd (K, E), y (b, L, E),
    states (b|K,b, nc, E, N), sums (b|K,b, nc, E) contiguous; other tangents strided."""
    c = tl.program_id(0).to(tl.int64)
    pe = tl.program_id(1).to(tl.int64)
    pbk = tl.program_id(2).to(tl.int64)
    pb = pbk % batch
    kb = pbk // batch
    i = tl.arange(0, BLOCK_T).to(tl.int64)
    e = pe * BLOCK_E + tl.arange(0, BLOCK_E).to(tl.int64)
    n = tl.arange(0, BLOCK_N).to(tl.int64)
    k = kb * BLOCK_K + tl.arange(0, BLOCK_K).to(tl.int64)
    t = c * chunk + i
    t_mask = (i < chunk) & (t < L)
    e_mask = e < E
    n_mask = n < N
    k_mask = k < K
    en_mask = e_mask[:, None] & n_mask[None, :]
    ken_mask = k_mask[:, None, None] & en_mask[None, :, :]
    te = t_mask[:, None] & e_mask[None, :]
    tn = t_mask[:, None] & n_mask[None, :]
    tke = te[:, None, :] & k_mask[None, :, None]
    tkn = tn[:, None, :] & k_mask[None, :, None]
    # masks are built from blocks: the interpreter mis-types splatted scalar comparisons
    first_kb = (e * 0 + kb) == 0  # only K-block 0 writes primal outputs
    A = tl.load(A_ptr + e[:, None] * sA_e + n[None, :] * sA_n, mask=en_mask, other=0.0).to(ACC)
    A3 = A[None, :, :]
    A4 = A[None, None, :, :]
    # primal: this position and the previous one (element 0 carries the chunk-start state)
    dt = tl.load(dt_ptr + pb * sd_b + t[:, None] * sd_l + e[None, :] * sd_e, mask=te, other=0.0).to(ACC)
    xv = tl.load(x_ptr + pb * sx_b + t[:, None] * sx_l + e[None, :] * sx_e, mask=te, other=0.0).to(ACC)
    Bv = tl.load(B_ptr + pb * sB_b + t[:, None] * sB_l + n[None, :] * sB_n, mask=tn, other=0.0).to(ACC)
    pm = (i >= 1) & (i - 1 < chunk) & (t - 1 < L)
    pe_mask = pm[:, None] & e_mask[None, :]
    dtp = tl.load(dt_ptr + pb * sd_b + (t - 1)[:, None] * sd_l + e[None, :] * sd_e, mask=pe_mask, other=0.0).to(ACC)
    xp = tl.load(x_ptr + pb * sx_b + (t - 1)[:, None] * sx_l + e[None, :] * sx_e, mask=pe_mask, other=0.0).to(ACC)
    Bp = tl.load(B_ptr + pb * sB_b + (t - 1)[:, None] * sB_l + n[None, :] * sB_n, mask=pm[:, None] & n_mask[None, :], other=0.0).to(ACC)
    state_off = ((pb * n_chunks + c) * E + e[:, None]) * N + n[None, :]
    stated_off = (((k[:, None, None] * batch + pb) * n_chunks + c) * E + e[None, :, None]) * N + n[None, None, :]
    if LOCAL:
        drive_prev = (dtp * xp)[:, :, None] * Bp[:, None, :]
    else:
        h_start = tl.load(start_ptr + state_off, mask=en_mask, other=0.0).to(ACC)
        drive_prev = tl.where((i == 0)[:, None, None], h_start[None, :, :], (dtp * xp)[:, :, None] * Bp[:, None, :])
    _, hp = tl.associative_scan((_exp(dtp[:, :, None] * A3), drive_prev), 0, _affine_combine)
    a = _exp(dt[:, :, None] * A3)
    ah = a * hp  # a_t h_{t-1}
    dx = dt * xv
    h = ah + dx[:, :, None] * Bv[:, None, :]
    # tangent drive [T, K, E, N]
    r = tl.zeros([BLOCK_T, BLOCK_K, BLOCK_E, BLOCK_N], dtype=ACC)
    if HAS_DTD:
        dtd = tl.load(dtd_ptr + k[None, :, None] * td_k + pb * td_b + t[:, None, None] * td_l + e[None, None, :] * td_e,
                      mask=tke, other=0.0).to(ACC)
        r += ah[:, None, :, :] * (dtd[:, :, :, None] * A4) + (dtd * xv[:, None, :])[:, :, :, None] * Bv[:, None, None, :]
    if HAS_AD:
        Ad = tl.load(Ad_ptr + (k[:, None, None] * E + e[None, :, None]) * N + n[None, None, :], mask=ken_mask, other=0.0).to(ACC)
        r += ah[:, None, :, :] * (dt[:, None, :, None] * Ad[None, :, :, :])
    if HAS_XD:
        xd = tl.load(xd_ptr + k[None, :, None] * tx_k + pb * tx_b + t[:, None, None] * tx_l + e[None, None, :] * tx_e,
                     mask=tke, other=0.0).to(ACC)
        r += (dt[:, None, :] * xd)[:, :, :, None] * Bv[:, None, None, :]
    if HAS_BD:
        Bd = tl.load(Bd_ptr + k[None, :, None] * tB_k + pb * tB_b + t[:, None, None] * tB_l + n[None, None, :] * tB_n,
                     mask=tkn, other=0.0).to(ACC)
        r += dx[:, None, :, None] * Bd[:, :, None, :]
    last_row = (i == BLOCK_T - 1)
    if LOCAL:
        nm = (i + 1 < chunk) & (t + 1 < L)
        dtn = tl.load(dt_ptr + pb * sd_b + (t + 1)[:, None] * sd_l + e[None, :] * sd_e,
                      mask=nm[:, None] & e_mask[None, :], other=0.0).to(ACC)
        w = _exp(tl.cumsum(dtn, axis=0, reverse=True)[:, :, None] * A3)  # decay from each position to the chunk end
        h_end = tl.sum(tl.where(last_row[:, None, None], h, 0.0), axis=0)  # padded rows carry the state
        tl.store(end_ptr + state_off, h_end, mask=en_mask & first_kb[:, None])
        tl.store(endd_ptr + stated_off, tl.sum(w[:, None, :, :] * r, axis=0), mask=ken_mask)
        tl.store(sdt_ptr + (pb * n_chunks + c) * E + e, tl.sum(dt, axis=0), mask=e_mask & first_kb)
        if HAS_DTD:
            tl.store(sdtd_ptr + ((k[:, None] * batch + pb) * n_chunks + c) * E + e[None, :], tl.sum(dtd, axis=0),
                     mask=k_mask[:, None] & e_mask[None, :])
    else:
        hd_start = tl.load(startd_ptr + stated_off, mask=ken_mask, other=0.0).to(ACC)
        a4 = tl.broadcast_to(a[:, None, :, :], [BLOCK_T, BLOCK_K, BLOCK_E, BLOCK_N])
        r = tl.where((i == 0)[:, None, None, None], r + a4 * hd_start[None, :, :, :], r)
        _, hd = tl.associative_scan((a4, r), 0, _affine_combine)
        Cv = tl.load(C_ptr + pb * sC_b + t[:, None] * sC_l + n[None, :] * sC_n, mask=tn, other=0.0).to(ACC)
        u = tl.sum(h * Cv[:, None, :], axis=2)
        ud = tl.sum(hd * Cv[:, None, None, :], axis=3)
        if HAS_CD:
            Cd = tl.load(Cd_ptr + k[None, :, None] * tC_k + pb * tC_b + t[:, None, None] * tC_l + n[None, None, :] * tC_n,
                         mask=tkn, other=0.0).to(ACC)
            ud += tl.sum(h[:, None, :, :] * Cd[:, :, None, :], axis=3)
        if HAS_D:
            Dv = tl.load(D_ptr + e * sD_e, mask=e_mask, other=0.0).to(ACC)
            u += Dv[None, :] * xv
            if HAS_XD:
                ud += Dv[None, None, :] * xd
        if HAS_DD:
            Dd = tl.load(Dd_ptr + k[:, None] * E + e[None, :], mask=k_mask[:, None] & e_mask[None, :], other=0.0).to(ACC)
            ud += Dd[None, :, :] * xv[:, None, :]
        if HAS_Z:
            zv = tl.load(z_ptr + pb * sz_b + t[:, None] * sz_l + e[None, :] * sz_e, mask=te, other=0.0).to(ACC)
            sig = _sigmoid(zv)
            silu = zv * sig
            y = u * silu
            yd = ud * silu[:, None, :]
            if HAS_ZD:
                zd = tl.load(zd_ptr + k[None, :, None] * tz_k + pb * tz_b + t[:, None, None] * tz_l + e[None, None, :] * tz_e,
                             mask=tke, other=0.0).to(ACC)
                yd += (u * sig * (1.0 + zv * (1.0 - sig)))[:, None, :] * zd
        else:
            y = u
            yd = ud
        last = (e * 0 + c) == n_chunks - 1
        if WRITE_PRIMAL:
            tl.store(y_ptr + (pb * L + t[:, None]) * E + e[None, :], y.to(y_ptr.dtype.element_ty), mask=te & first_kb[None, :])
            h_end = tl.sum(tl.where(last_row[:, None, None], h, 0.0), axis=0)
            tl.store(hout_ptr + (pb * E + e[:, None]) * N + n[None, :], h_end, mask=en_mask & (last & first_kb)[:, None])
        tl.store(yd_ptr + ((k[None, :, None] * batch + pb) * L + t[:, None, None]) * E + e[None, None, :],
                 yd.to(yd_ptr.dtype.element_ty), mask=tke)
        hd_end = tl.sum(tl.where(last_row[:, None, None, None], hd, 0.0), axis=0)
        tl.store(houtd_ptr + ((k[:, None, None] * batch + pb) * E + e[None, :, None]) * N + n[None, None, :], hd_end,
                 mask=ken_mask & last[None, :, None])


@triton.jit
def _tan_carry_kernel(
    sdt_ptr, sdtd_ptr, loc_ptr, locd_ptr, A_ptr, Ad_ptr, init_ptr, initd_ptr, out_ptr, outd_ptr,
    E, N, batch, n_chunks, sA_e, sA_n,
    HAS_DTD: tl.constexpr, HAS_AD: tl.constexpr, HAS_INIT: tl.constexpr, HAS_INITD: tl.constexpr,
    ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (E-blocks, b, K): chunk starts of (h, h'_k). Chunk c maps (h, h') to
    (P h + l, P h' + P Q h + m) with P = exp(A S), Q = A S' + A' S (S, S' the chunk's sums of
    delta, delta'). Tangent k = 0 also writes the primal starts. init (b, E, N), initd
    (K, b, E, N), Ad (K, E, N), sums (b|K,b, nc, E), states (b|K,b, nc, E, N) contiguous."""
    pe = tl.program_id(0).to(tl.int64)
    pb = tl.program_id(1).to(tl.int64)
    pk = tl.program_id(2).to(tl.int64)
    e = pe * BLOCK_E + tl.arange(0, BLOCK_E).to(tl.int64)
    n = tl.arange(0, BLOCK_N).to(tl.int64)
    cc = tl.arange(0, BLOCK_C).to(tl.int64)
    e_mask = e < E
    en_mask = e_mask[:, None] & (n < N)[None, :]
    primal = en_mask & ((e * 0 + pk) == 0)[:, None]  # tangent 0 also writes the primal starts
    A = tl.load(A_ptr + e[:, None] * sA_e + n[None, :] * sA_n, mask=en_mask, other=0.0).to(ACC)
    if HAS_AD:
        Ad = tl.load(Ad_ptr + (pk * E + e[:, None]) * N + n[None, :], mask=en_mask, other=0.0).to(ACC)
    lane = (pb * E + e[:, None]) * N + n[None, :]
    laned = ((pk * batch + pb) * E + e[:, None]) * N + n[None, :]
    if HAS_INIT:
        carry = tl.load(init_ptr + lane, mask=en_mask, other=0.0).to(ACC)
    else:
        carry = tl.zeros([BLOCK_E, BLOCK_N], dtype=ACC)
    if HAS_INITD:
        carryd = tl.load(initd_ptr + laned, mask=en_mask, other=0.0).to(ACC)
    else:
        carryd = tl.zeros([BLOCK_E, BLOCK_N], dtype=ACC)
    n_blocks = tl.cdiv(n_chunks, BLOCK_C)
    for j in range(0, n_blocks):
        first = j * BLOCK_C
        c = first + cc
        c_mask = c < n_chunks
        ce_mask = c_mask[:, None] & e_mask[None, :]
        m3 = c_mask[:, None, None] & en_mask[None, :, :]
        sdt = tl.load(sdt_ptr + (pb * n_chunks + c[:, None]) * E + e[None, :], mask=ce_mask, other=0.0).to(ACC)
        P = _exp(sdt[:, :, None] * A[None, :, :])
        Q = tl.zeros([BLOCK_C, BLOCK_E, BLOCK_N], dtype=ACC)
        if HAS_DTD:
            sdtd = tl.load(sdtd_ptr + ((pk * batch + pb) * n_chunks + c[:, None]) * E + e[None, :], mask=ce_mask, other=0.0).to(ACC)
            Q += sdtd[:, :, None] * A[None, :, :]
        if HAS_AD:
            Q += sdt[:, :, None] * Ad[None, :, :]
        off3 = ((pb * n_chunks + c[:, None, None]) * E + e[None, :, None]) * N + n[None, None, :]
        off3d = (((pk * batch + pb) * n_chunks + c[:, None, None]) * E + e[None, :, None]) * N + n[None, None, :]
        loc = tl.load(loc_ptr + off3, mask=m3, other=0.0).to(ACC)
        locd = tl.load(locd_ptr + off3d, mask=m3, other=0.0).to(ACC)
        Pc, Qc, Lc, Mc = tl.associative_scan((P, Q, loc, locd), 0, _tangent_combine)
        val = Pc * carry[None, :, :] + Lc
        vald = Pc * carryd[None, :, :] + Pc * Qc * carry[None, :, :] + Mc
        inside = m3 & (cc + 1 < BLOCK_C)[:, None, None] & (c + 1 < n_chunks)[:, None, None]
        tl.store(out_ptr + off3 + E * N, val, mask=inside & primal[None, :, :])
        tl.store(outd_ptr + off3d + E * N, vald, mask=inside)
        tl.store(out_ptr + ((pb * n_chunks + first) * E + e[:, None]) * N + n[None, :], carry, mask=primal)
        tl.store(outd_ptr + (((pk * batch + pb) * n_chunks + first) * E + e[:, None]) * N + n[None, :], carryd, mask=en_mask)
        is_last = (cc == BLOCK_C - 1)[:, None, None]
        carry = tl.sum(tl.where(is_last, val, 0.0), axis=0)
        carryd = tl.sum(tl.where(is_last, vald, 0.0), axis=0)


# ----------------------------------------------------------------------------------------------
# adjoint (reverse mode)


@triton.jit
def _bwd_local_kernel(
    dt_ptr, A_ptr, C_ptr, z_ptr, dy_ptr, loc_ptr, sdt_ptr,
    L, E, N, chunk, n_chunks,
    sd_b, sd_l, sd_e, sz_b, sz_l, sz_e, sg_b, sg_l, sg_e, sC_b, sC_l, sC_n, sA_e, sA_n,
    HAS_Z: tl.constexpr, ACC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (chunks, E-blocks, b): each chunk's contribution to the cotangent of its start
    state from a zero end cotangent, sum_t exp(A cumsum(delta)_t) du_t C_t (exponents <= 0),
    into loc (b, nc, E, N); and sum(delta) into sdt (b, nc, E)."""
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
    te = t_mask[:, None] & e_mask[None, :]
    A = tl.load(A_ptr + e[:, None] * sA_e + n[None, :] * sA_n, mask=e_mask[:, None] & n_mask[None, :], other=0.0).to(ACC)
    dt = tl.load(dt_ptr + pb * sd_b + t[:, None] * sd_l + e[None, :] * sd_e, mask=te, other=0.0).to(ACC)
    du = tl.load(dy_ptr + pb * sg_b + t[:, None] * sg_l + e[None, :] * sg_e, mask=te, other=0.0).to(ACC)
    if HAS_Z:
        zv = tl.load(z_ptr + pb * sz_b + t[:, None] * sz_l + e[None, :] * sz_e, mask=te, other=0.0).to(ACC)
        du = du * zv * _sigmoid(zv)
    Cv = tl.load(C_ptr + pb * sC_b + t[:, None] * sC_l + n[None, :] * sC_n, mask=t_mask[:, None] & n_mask[None, :], other=0.0).to(ACC)
    w = _exp(tl.cumsum(dt, axis=0)[:, :, None] * A[None, :, :])
    loc = tl.sum(w * du[:, :, None] * Cv[:, None, :], axis=0)
    tl.store(loc_ptr + ((pb * n_chunks + c) * E + e[:, None]) * N + n[None, :], loc, mask=e_mask[:, None] & n_mask[None, :])
    tl.store(sdt_ptr + (pb * n_chunks + c) * E + e, tl.sum(dt, axis=0), mask=e_mask)


@triton.jit
def _bwd_chunk_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dy_ptr, start_ptr, gend_ptr,
    dx_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr,
    L, E, N, chunk, n_chunks, n_groups, blocks_per_group,
    sx_b, sx_l, sx_e, sd_b, sd_l, sd_e, sz_b, sz_l, sz_e, sg_b, sg_l, sg_e,
    sB_b, sB_l, sB_n, sC_b, sC_l, sC_n, sA_e, sA_n, sD_e,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, ACC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Grid (chunks, E-groups, b); a program takes `blocks_per_group` E-blocks of its group in
    turn. Per E-block: states h_{t-1} of the chunk by an associative scan from the saved start
    state (b, nc, E, N); state cotangents G_t = a_{t+1} G_{t+1} + du_t C_t by a reversed scan
    from the chunk-end cotangent gend (b, nc, E, N); dx, ddelta, dz (b, L, E) written. dB and
    dC are summed over the group's channels on chip, in a fixed order, and written as
    per-group partials (b, n_groups, L, N), which the caller sums (no atomics)."""
    c = tl.program_id(0).to(tl.int64)
    pg = tl.program_id(1).to(tl.int64)
    pb = tl.program_id(2).to(tl.int64)
    i = tl.arange(0, BLOCK_T).to(tl.int64)
    n = tl.arange(0, BLOCK_N).to(tl.int64)
    t = c * chunk + i
    t_mask = (i < chunk) & (t < L)
    n_mask = n < N
    tn = t_mask[:, None] & n_mask[None, :]
    # this position and the previous one (element 0 of the state scan carries the start state)
    pm = (i >= 1) & (i - 1 < chunk) & (t - 1 < L)
    tp = t - 1
    # the next position's decay (1 past the chunk or the sequence: the seed enters at the end)
    nm = (i + 1 < chunk) & (t + 1 < L)
    Bv = tl.load(B_ptr + pb * sB_b + t[:, None] * sB_l + n[None, :] * sB_n, mask=tn, other=0.0).to(ACC)
    Cv = tl.load(C_ptr + pb * sC_b + t[:, None] * sC_l + n[None, :] * sC_n, mask=tn, other=0.0).to(ACC)
    Bp = tl.load(B_ptr + pb * sB_b + tp[:, None] * sB_l + n[None, :] * sB_n, mask=pm[:, None] & n_mask[None, :], other=0.0).to(ACC)
    first = (i == 0)[:, None, None]
    last_row = (i == BLOCK_T - 1)[:, None, None]
    dB = tl.zeros([BLOCK_T, BLOCK_N], dtype=ACC)
    dC = tl.zeros([BLOCK_T, BLOCK_N], dtype=ACC)
    for j in range(0, blocks_per_group):
        e = (pg * blocks_per_group + j) * BLOCK_E + tl.arange(0, BLOCK_E).to(tl.int64)
        e_mask = e < E
        en_mask = e_mask[:, None] & n_mask[None, :]
        te = t_mask[:, None] & e_mask[None, :]
        pe_mask = pm[:, None] & e_mask[None, :]
        A = tl.load(A_ptr + e[:, None] * sA_e + n[None, :] * sA_n, mask=en_mask, other=0.0).to(ACC)[None, :, :]
        dt = tl.load(dt_ptr + pb * sd_b + t[:, None] * sd_l + e[None, :] * sd_e, mask=te, other=0.0).to(ACC)
        xv = tl.load(x_ptr + pb * sx_b + t[:, None] * sx_l + e[None, :] * sx_e, mask=te, other=0.0).to(ACC)
        dy = tl.load(dy_ptr + pb * sg_b + t[:, None] * sg_l + e[None, :] * sg_e, mask=te, other=0.0).to(ACC)
        dtp = tl.load(dt_ptr + pb * sd_b + tp[:, None] * sd_l + e[None, :] * sd_e, mask=pe_mask, other=0.0).to(ACC)
        xp = tl.load(x_ptr + pb * sx_b + tp[:, None] * sx_l + e[None, :] * sx_e, mask=pe_mask, other=0.0).to(ACC)
        h_start = tl.load(start_ptr + ((pb * n_chunks + c) * E + e[:, None]) * N + n[None, :], mask=en_mask, other=0.0).to(ACC)
        drive_prev = tl.where(first, h_start[None, :, :], (dtp * xp)[:, :, None] * Bp[:, None, :])
        _, hp = tl.associative_scan((_exp(dtp[:, :, None] * A), drive_prev), 0, _affine_combine)  # h_{t-1}
        a = _exp(dt[:, :, None] * A)
        h = a * hp + (dt * xv)[:, :, None] * Bv[:, None, :]
        u = tl.sum(h * Cv[:, None, :], axis=2)
        if HAS_D:
            Dv = tl.load(D_ptr + e * sD_e, mask=e_mask, other=0.0).to(ACC)
            u += Dv[None, :] * xv
        if HAS_Z:
            zv = tl.load(z_ptr + pb * sz_b + t[:, None] * sz_l + e[None, :] * sz_e, mask=te, other=0.0).to(ACC)
            sig = _sigmoid(zv)
            du = dy * zv * sig
            dz = dy * u * sig * (1.0 + zv * (1.0 - sig))
            tl.store(dz_ptr + (pb * L + t[:, None]) * E + e[None, :], dz.to(dz_ptr.dtype.element_ty), mask=te)
        else:
            du = dy
        dtn = tl.load(dt_ptr + pb * sd_b + (t + 1)[:, None] * sd_l + e[None, :] * sd_e,
                      mask=nm[:, None] & e_mask[None, :], other=0.0).to(ACC)
        g_end = tl.load(gend_ptr + ((pb * n_chunks + c) * E + e[:, None]) * N + n[None, :], mask=en_mask, other=0.0).to(ACC)
        beta = du[:, :, None] * Cv[:, None, :]
        beta = tl.where(last_row, beta + g_end[None, :, :], beta)
        _, G = tl.associative_scan((_exp(dtn[:, :, None] * A), beta), 0, _affine_combine, reverse=True)
        GB = tl.sum(G * Bv[:, None, :], axis=2)
        dx = dt * GB
        if HAS_D:
            dx += Dv[None, :] * du
        ddt = xv * GB + tl.sum(G * A * a * hp, axis=2)
        tl.store(dx_ptr + (pb * L + t[:, None]) * E + e[None, :], dx.to(dx_ptr.dtype.element_ty), mask=te)
        tl.store(ddt_ptr + (pb * L + t[:, None]) * E + e[None, :], ddt.to(ddt_ptr.dtype.element_ty), mask=te)
        dB += tl.sum(G * (dt * xv)[:, :, None], axis=1)
        dC += tl.sum(h * du[:, :, None], axis=1)
    part = ((pb * n_groups + pg) * L + t[:, None]) * N + n[None, :]
    tl.store(dB_ptr + part, dB, mask=tn)
    tl.store(dC_ptr + part, dC, mask=tn)


# Compiled for CUDA, exponentials go through libdevice (__nv_expf, ~1 ulp): tl.exp lowers fp32
# to ex2.approx (~2 ulp), whose error compounds over long runs of decays near 1. The
# interpreter cannot call libdevice; its tl.exp is numpy's, precise already. (Read by _exp
# when a kernel is compiled or interpreted, so it is set here, once the kernels exist.)
_PRECISE_EXP = tl.constexpr(not interpreted())


# ----------------------------------------------------------------------------------------------
# launchers


def _s3(t: torch.Tensor | None) -> tuple[int, int, int]:
    return tuple(t.stride()) if t is not None else (0, 0, 0)


def _s4(t: torch.Tensor | None) -> tuple[int, int, int, int]:
    return tuple(t.stride()) if t is not None else (0, 0, 0, 0)


def _check(x, delta, A, B, C, D, z, h0) -> tuple[int, int, int, int]:
    b, L, E = x.shape
    N = A.shape[1]
    if delta.shape != x.shape or (z is not None and z.shape != x.shape):
        raise ValueError("delta and z must have the shape of x (b, L, E)")
    if A.shape != (E, N) or B.shape != (b, L, N) or C.shape != (b, L, N):
        raise ValueError(f"expected A ({E}, {N}), B and C ({b}, {L}, {N}); got {tuple(A.shape)}, {tuple(B.shape)}, {tuple(C.shape)}")
    if D is not None and D.shape != (E,):
        raise ValueError(f"expected D ({E},), got {tuple(D.shape)}")
    if h0 is not None and h0.shape != (b, E, N):
        raise ValueError(f"expected h0 ({b}, {E}, {N}), got {tuple(h0.shape)}")
    return b, L, E, N


def _chunk_starts(x, delta, A, B, h0, chunk, n_chunks, cfg, work, tl_work):
    """Passes 1 and 2 of the forward: every chunk's start state (b, nc, E, N)."""
    b, L, E = x.shape
    N = A.shape[1]
    starts = _alloc((b, n_chunks, E, N), work, x.device)
    if n_chunks == 1:
        if h0 is None:
            starts.zero_()
        else:
            starts[:, 0].copy_(h0)
        return starts
    local = _alloc((b, n_chunks, E, N), work, x.device)
    sdt = _alloc((b, n_chunks, E), work, x.device)
    BE = cfg["fwd_e"]
    _fwd_chunk_kernel[(n_chunks, triton.cdiv(E, BE), b)](
        x, delta, A, B, B, x, x, local, x, local, sdt, local,
        L, E, N, chunk, n_chunks,
        *_s3(x), *_s3(delta), 0, 0, 0, *_s3(B), 0, 0, 0, *A.stride(), 0,
        LOCAL=True, HAS_D=False, HAS_Z=False, ACC=tl_work,
        BLOCK_T=cfg["t"], BLOCK_E=BE, BLOCK_N=cfg["n"], num_warps=cfg["warps_fwd"],
    )
    init = h0.contiguous() if h0 is not None else sdt
    BE2 = cfg["carry_e"]
    _carry_kernel[(triton.cdiv(E, BE2), b)](
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
    b, L, E, N = _check(x, delta, A, B, C, D, z, h0)
    work, tl_work = _acc(x)
    chunk = chunk or default_chunk(x.device)
    n_chunks = max(1, triton.cdiv(L, chunk))
    if L == 0 or b == 0 or E == 0:
        h_last = h0.to(work).clone() if h0 is not None else torch.zeros(b, E, N, dtype=work, device=x.device)
        starts = h_last.unsqueeze(1).clone()
        return x.new_empty(b, L, E), h_last, starts
    cfg = _config(x.device, E, N, chunk, n_chunks, blocks=blocks)
    starts = _chunk_starts(x, delta, A, B, h0, chunk, n_chunks, cfg, work, tl_work)
    y = _alloc((b, L, E), x.dtype, x.device)
    h_last = _alloc((b, E, N), work, x.device)
    BE = cfg["fwd_e"]
    _fwd_chunk_kernel[(n_chunks, triton.cdiv(E, BE), b)](
        x, delta, A, B, C, D if D is not None else x, z if z is not None else x,
        starts, y, starts, starts, h_last,
        L, E, N, chunk, n_chunks,
        *_s3(x), *_s3(delta), *_s3(z), *_s3(B), *_s3(C), *A.stride(), D.stride(0) if D is not None else 0,
        LOCAL=False, HAS_D=D is not None, HAS_Z=z is not None, ACC=tl_work,
        BLOCK_T=cfg["t"], BLOCK_E=BE, BLOCK_N=cfg["n"], num_warps=cfg["warps_fwd"],
    )
    return y, h_last, starts


def scan_tangent(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    h0: torch.Tensor | None,
    tangents: tuple,
    K: int | None = None,
    chunk: int | None = None,
    write_primal: bool = True,
    blocks: dict | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Primal and K tangents in one pass: (y, h_last, y' (K, b, L, E), h_last' (K, b, E, N)).

    tangents = (x', delta', A', B', C', D', z', h0'), each None (zero) or with a leading K:
    x', delta', z' (K, b, L, E); B', C' (K, b, L, N); A' (K, E, N); D' (K, E); h0' (K, b, E, N).
    y' is in x's dtype, h_last' in the work dtype. With write_primal=False, y and h_last are None."""
    b, L, E, N = _check(x, delta, A, B, C, D, z, h0)
    xd, dtd, Ad, Bd, Cd, Dd, zd, h0d = tangents
    present = [t for t in tangents if t is not None]
    if K is None:
        if not present:
            raise ValueError("K must be given when every tangent is None")
        K = present[0].shape[0]
    if any(t.shape[0] != K for t in present):
        raise ValueError("every tangent must have the same leading K")
    if D is None:
        Dd = None
    if z is None:
        zd = None
    work, tl_work = _acc(x)
    chunk = chunk or default_chunk(x.device)
    n_chunks = max(1, triton.cdiv(L, chunk))
    if L == 0 or b == 0 or E == 0 or K == 0:
        y, h_last = scan_forward(x, delta, A, B, C, D, z, h0, chunk)[:2] if write_primal else (None, None)
        if L == 0 and h0d is not None:  # nothing to scan: the state tangent passes through
            hd_last = h0d.to(work).expand(K, b, E, N).clone()
        else:
            hd_last = torch.zeros(K, b, E, N, dtype=work, device=x.device)
        return y, h_last, x.new_zeros(K, b, L, E), hd_last
    cfg = _config(x.device, E, N, chunk, n_chunks, K=K, blocks=blocks)
    BK, BE, BN = cfg["k"], cfg["tan_e"], cfg["n"]
    dev = x.device
    Ad = Ad.expand(K, E, N).contiguous() if Ad is not None else None
    Dd = Dd.expand(K, E).contiguous() if Dd is not None else None
    h0c = h0.contiguous() if h0 is not None else None
    h0dc = h0d.expand(K, b, E, N).contiguous() if h0d is not None else None
    flags = dict(
        HAS_D=D is not None, HAS_Z=z is not None, HAS_XD=xd is not None, HAS_DTD=dtd is not None,
        HAS_AD=Ad is not None, HAS_BD=Bd is not None, HAS_CD=Cd is not None, HAS_DD=Dd is not None,
        HAS_ZD=zd is not None, ACC=tl_work, BLOCK_T=cfg["t"], BLOCK_K=BK, BLOCK_E=BE, BLOCK_N=BN, num_warps=cfg["warps_tan"],
    )
    dummy = x
    ptrs = lambda t: t if t is not None else dummy  # noqa: E731
    tangent_strides = (*_s4(xd), *_s4(dtd), *_s4(zd), *_s4(Bd), *_s4(Cd))
    grid = (n_chunks, triton.cdiv(E, BE), b * triton.cdiv(K, BK))
    starts = _alloc((b, n_chunks, E, N), work, dev)
    startsd = _alloc((K, b, n_chunks, E, N), work, dev)
    if n_chunks == 1:
        starts[:, 0] = h0 if h0 is not None else 0
        startsd[:, :, 0] = h0dc if h0dc is not None else 0
    else:
        local = _alloc((b, n_chunks, E, N), work, dev)
        locald = _alloc((K, b, n_chunks, E, N), work, dev)
        sdt = _alloc((b, n_chunks, E), work, dev)
        sdtd = _alloc((K, b, n_chunks, E), work, dev) if dtd is not None else sdt
        _tan_chunk_kernel[grid](
            x, delta, A, B, C, ptrs(D), ptrs(z), ptrs(xd), ptrs(dtd), ptrs(Ad), ptrs(Bd), ptrs(Cd), ptrs(Dd), ptrs(zd),
            local, locald, dummy, dummy, local, locald, sdt, sdtd, local, locald,
            L, E, N, K, chunk, n_chunks, b,
            *_s3(x), *_s3(delta), *_s3(z), *_s3(B), *_s3(C), *A.stride(), D.stride(0) if D is not None else 0,
            *tangent_strides, LOCAL=True, WRITE_PRIMAL=False, **flags,
        )
        _tan_carry_kernel[(triton.cdiv(E, cfg["carry_e"]), b, K)](
            sdt, sdtd, local, locald, A, ptrs(Ad), ptrs(h0c), ptrs(h0dc), starts, startsd,
            E, N, b, n_chunks, *A.stride(),
            HAS_DTD=dtd is not None, HAS_AD=Ad is not None, HAS_INIT=h0 is not None, HAS_INITD=h0d is not None,
            ACC=tl_work, BLOCK_C=cfg["carry_c"], BLOCK_E=cfg["carry_e"], BLOCK_N=BN, num_warps=cfg["warps_carry"],
        )
        del local, locald, sdt, sdtd  # pass-1 scratch, free before the outputs are allocated
    y = _alloc((b, L, E), x.dtype, dev) if write_primal else dummy
    h_last = _alloc((b, E, N), work, dev) if write_primal else dummy
    yd = _alloc((K, b, L, E), x.dtype, dev)
    hd_last = _alloc((K, b, E, N), work, dev)
    _tan_chunk_kernel[grid](
        x, delta, A, B, C, ptrs(D), ptrs(z), ptrs(xd), ptrs(dtd), ptrs(Ad), ptrs(Bd), ptrs(Cd), ptrs(Dd), ptrs(zd),
        starts, startsd, y, yd, starts, startsd, starts, starts, h_last, hd_last,
        L, E, N, K, chunk, n_chunks, b,
        *_s3(x), *_s3(delta), *_s3(z), *_s3(B), *_s3(C), *A.stride(), D.stride(0) if D is not None else 0,
        *tangent_strides, LOCAL=False, WRITE_PRIMAL=write_primal, **flags,
    )
    if not write_primal:
        return None, None, yd, hd_last
    return y, h_last, yd, hd_last


def scan_backward(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    starts: torch.Tensor,
    dy: torch.Tensor | None,
    dh_last: torch.Tensor | None,
    chunk: int | None = None,
    blocks: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Input gradients (dx, ddelta, dB, dC, dz or None, dh0) from dy (b, L, E) and
    dh_last (b, E, N), either None (zero), recomputing states from `starts` (b, nc, E, N),
    the chunk starts scan_forward returned for the same `chunk`. No dA, dD."""
    b, L, E, N = _check(x, delta, A, B, C, D, z, None)
    work, tl_work = _acc(x)
    chunk = chunk or default_chunk(x.device)
    n_chunks = max(1, triton.cdiv(L, chunk))
    if starts.shape != (b, n_chunks, E, N):
        raise ValueError(f"chunk starts {tuple(starts.shape)} do not match chunk {chunk} (expected {(b, n_chunks, E, N)})")
    dev = x.device
    if dy is None:
        dy = torch.zeros_like(x)
    if L == 0 or b == 0 or E == 0:
        dh0 = dh_last.to(work).clone() if dh_last is not None else torch.zeros(b, E, N, dtype=work, device=dev)
        return (torch.zeros_like(x), torch.zeros_like(delta), torch.zeros_like(B), torch.zeros_like(C),
                torch.zeros_like(z) if z is not None else None, dh0)
    cfg = _config(dev, E, N, chunk, n_chunks, blocks=blocks)
    BT, BE, BN = cfg["t"], cfg["bwd_e"], cfg["n"]
    n_eblocks = triton.cdiv(E, BE)
    grid = (n_chunks, n_eblocks, b)
    # E-blocks per program: enough programs to fill the device, few dB/dC partials (b, G, L, N)
    groups = cfg["bwd_groups"] or min(n_eblocks, max(1, triton.cdiv(cfg["programs"], n_chunks * b)))
    per_group = triton.cdiv(n_eblocks, groups)
    groups = triton.cdiv(n_eblocks, per_group)
    local = _alloc((b, n_chunks, E, N), work, dev)
    sdt = _alloc((b, n_chunks, E), work, dev)
    _bwd_local_kernel[grid](
        delta, A, C, z if z is not None else x, dy, local, sdt,
        L, E, N, chunk, n_chunks,
        *_s3(delta), *_s3(z), *_s3(dy), *_s3(C), *A.stride(),
        HAS_Z=z is not None, ACC=tl_work, BLOCK_T=BT, BLOCK_E=BE, BLOCK_N=BN, num_warps=cfg["warps_bwd"],
    )
    gend = _alloc((b, n_chunks, E, N), work, dev)
    dh0 = _alloc((b, E, N), work, dev)
    init = dh_last.contiguous() if dh_last is not None else dh0
    _carry_kernel[(triton.cdiv(E, cfg["carry_e"]), b)](
        sdt, local, A, init, gend, dh0, E, N, n_chunks, *A.stride(),
        HAS_INIT=dh_last is not None, REVERSE=True, WRITE_FINAL=True, ACC=tl_work,
        BLOCK_C=cfg["carry_c"], BLOCK_E=cfg["carry_e"], BLOCK_N=BN, num_warps=cfg["warps_carry"],
    )
    del local, sdt  # pass-1 scratch, free before the outputs are allocated
    dx = _alloc((b, L, E), x.dtype, dev)
    ddelta = _alloc((b, L, E), delta.dtype, dev)
    dz = _alloc((b, L, E), z.dtype, dev) if z is not None else None
    dB_part = _alloc((b, groups, L, N), work, dev)
    dC_part = _alloc((b, groups, L, N), work, dev)
    _bwd_chunk_kernel[(n_chunks, groups, b)](
        x, delta, A, B, C, D if D is not None else x, z if z is not None else x, dy, starts, gend,
        dx, ddelta, dz if dz is not None else dx, dB_part, dC_part,
        L, E, N, chunk, n_chunks, groups, per_group,
        *_s3(x), *_s3(delta), *_s3(z), *_s3(dy), *_s3(B), *_s3(C), *A.stride(), D.stride(0) if D is not None else 0,
        HAS_D=D is not None, HAS_Z=z is not None, ACC=tl_work,
        BLOCK_T=BT, BLOCK_E=BE, BLOCK_N=BN, num_warps=cfg["warps_bwd"],
    )
    # fixed-order reduction over E-groups (deterministic; no atomics)
    dB = dB_part.sum(dim=1).to(B.dtype)
    dC = dC_part.sum(dim=1).to(C.dtype)
    return dx, ddelta, dB, dC, dz, dh0


__all__ = ["scan_forward", "scan_tangent", "scan_backward", "interpreted", "default_chunk", "NAN_FILL"]
