"""The selective scan's Triton tangent (forward mode, K directions sharing one primal): kernels and
`scan_tangent`. The algorithm is described in `pgf_kernels.scan.triton`."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from pgf_kernels.scan.triton_forward import scan_forward
from pgf_kernels.scan.triton_util import (
    affine_combine,
    check_shapes,
    config,
    default_chunk,
    strides3,
    strides4,
    tangent_combine,
)
from pgf_kernels.triton_common import alloc, exp, sigmoid, work_dtypes


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
    _, hp = tl.associative_scan((exp(dtp[:, :, None] * A3), drive_prev), 0, affine_combine)
    a = exp(dt[:, :, None] * A3)
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
        w = exp(tl.cumsum(dtn, axis=0, reverse=True)[:, :, None] * A3)  # decay from each position to the chunk end
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
        _, hd = tl.associative_scan((a4, r), 0, affine_combine)
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
            sig = sigmoid(zv)
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
        P = exp(sdt[:, :, None] * A[None, :, :])
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
        Pc, Qc, Lc, Mc = tl.associative_scan((P, Q, loc, locd), 0, tangent_combine)
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
    b, L, E, N = check_shapes(x, delta, A, B, C, D, z, h0)
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
    work, tl_work = work_dtypes(x)
    chunk = chunk or default_chunk(x.device)
    n_chunks = max(1, triton.cdiv(L, chunk))
    if L == 0 or b == 0 or E == 0 or K == 0:
        y, h_last = scan_forward(x, delta, A, B, C, D, z, h0, chunk)[:2] if write_primal else (None, None)
        if L == 0 and h0d is not None:  # nothing to scan: the state tangent passes through
            hd_last = h0d.to(work).expand(K, b, E, N).clone()
        else:
            hd_last = torch.zeros(K, b, E, N, dtype=work, device=x.device)
        return y, h_last, x.new_zeros(K, b, L, E), hd_last
    cfg = config(x.device, E, N, chunk, n_chunks, K=K, blocks=blocks)
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
    tangent_strides = (*strides4(xd), *strides4(dtd), *strides4(zd), *strides4(Bd), *strides4(Cd))
    grid = (n_chunks, triton.cdiv(E, BE), b * triton.cdiv(K, BK))
    starts = alloc((b, n_chunks, E, N), work, dev)
    startsd = alloc((K, b, n_chunks, E, N), work, dev)
    if n_chunks == 1:
        starts[:, 0] = h0 if h0 is not None else 0
        startsd[:, :, 0] = h0dc if h0dc is not None else 0
    else:
        local = alloc((b, n_chunks, E, N), work, dev)
        locald = alloc((K, b, n_chunks, E, N), work, dev)
        sdt = alloc((b, n_chunks, E), work, dev)
        sdtd = alloc((K, b, n_chunks, E), work, dev) if dtd is not None else sdt
        _tan_chunk_kernel[grid](
            x, delta, A, B, C, ptrs(D), ptrs(z), ptrs(xd), ptrs(dtd), ptrs(Ad), ptrs(Bd), ptrs(Cd), ptrs(Dd), ptrs(zd),
            local, locald, dummy, dummy, local, locald, sdt, sdtd, local, locald,
            L, E, N, K, chunk, n_chunks, b,
            *strides3(x), *strides3(delta), *strides3(z), *strides3(B), *strides3(C), *A.stride(), D.stride(0) if D is not None else 0,
            *tangent_strides, LOCAL=True, WRITE_PRIMAL=False, **flags,
        )
        _tan_carry_kernel[(triton.cdiv(E, cfg["carry_e"]), b, K)](
            sdt, sdtd, local, locald, A, ptrs(Ad), ptrs(h0c), ptrs(h0dc), starts, startsd,
            E, N, b, n_chunks, *A.stride(),
            HAS_DTD=dtd is not None, HAS_AD=Ad is not None, HAS_INIT=h0 is not None, HAS_INITD=h0d is not None,
            ACC=tl_work, BLOCK_C=cfg["carry_c"], BLOCK_E=cfg["carry_e"], BLOCK_N=BN, num_warps=cfg["warps_carry"],
        )
        del local, locald, sdt, sdtd  # pass-1 scratch, free before the outputs are allocated
    y = alloc((b, L, E), x.dtype, dev) if write_primal else dummy
    h_last = alloc((b, E, N), work, dev) if write_primal else dummy
    yd = alloc((K, b, L, E), x.dtype, dev)
    hd_last = alloc((K, b, E, N), work, dev)
    _tan_chunk_kernel[grid](
        x, delta, A, B, C, ptrs(D), ptrs(z), ptrs(xd), ptrs(dtd), ptrs(Ad), ptrs(Bd), ptrs(Cd), ptrs(Dd), ptrs(zd),
        starts, startsd, y, yd, starts, startsd, starts, starts, h_last, hd_last,
        L, E, N, K, chunk, n_chunks, b,
        *strides3(x), *strides3(delta), *strides3(z), *strides3(B), *strides3(C), *A.stride(), D.stride(0) if D is not None else 0,
        *tangent_strides, LOCAL=False, WRITE_PRIMAL=write_primal, **flags,
    )
    if not write_primal:
        return None, None, yd, hd_last
    return y, h_last, yd, hd_last
