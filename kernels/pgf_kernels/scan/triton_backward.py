"""The selective scan's Triton adjoint (reverse mode): kernels and `scan_backward`. The algorithm is
described in `pgf_kernels.scan.triton`."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from pgf_kernels.scan.triton_forward import carry_kernel
from pgf_kernels.scan.triton_util import affine_combine, check_shapes, config, default_chunk, strides3
from pgf_kernels.triton_common import alloc, exp, sigmoid, work_dtypes


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
        du = du * zv * sigmoid(zv)
    Cv = tl.load(C_ptr + pb * sC_b + t[:, None] * sC_l + n[None, :] * sC_n, mask=t_mask[:, None] & n_mask[None, :], other=0.0).to(ACC)
    w = exp(tl.cumsum(dt, axis=0)[:, :, None] * A[None, :, :])
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
        _, hp = tl.associative_scan((exp(dtp[:, :, None] * A), drive_prev), 0, affine_combine)  # h_{t-1}
        a = exp(dt[:, :, None] * A)
        h = a * hp + (dt * xv)[:, :, None] * Bv[:, None, :]
        u = tl.sum(h * Cv[:, None, :], axis=2)
        if HAS_D:
            Dv = tl.load(D_ptr + e * sD_e, mask=e_mask, other=0.0).to(ACC)
            u += Dv[None, :] * xv
        if HAS_Z:
            zv = tl.load(z_ptr + pb * sz_b + t[:, None] * sz_l + e[None, :] * sz_e, mask=te, other=0.0).to(ACC)
            sig = sigmoid(zv)
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
        _, G = tl.associative_scan((exp(dtn[:, :, None] * A), beta), 0, affine_combine, reverse=True)
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
    b, L, E, N = check_shapes(x, delta, A, B, C, D, z, None)
    work, tl_work = work_dtypes(x)
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
    cfg = config(dev, E, N, chunk, n_chunks, blocks=blocks)
    BT, BE, BN = cfg["t"], cfg["bwd_e"], cfg["n"]
    n_eblocks = triton.cdiv(E, BE)
    grid = (n_chunks, n_eblocks, b)
    # E-blocks per program: enough programs to fill the device, few dB/dC partials (b, G, L, N)
    groups = cfg["bwd_groups"] or min(n_eblocks, max(1, triton.cdiv(cfg["programs"], n_chunks * b)))
    per_group = triton.cdiv(n_eblocks, groups)
    groups = triton.cdiv(n_eblocks, per_group)
    local = alloc((b, n_chunks, E, N), work, dev)
    sdt = alloc((b, n_chunks, E), work, dev)
    _bwd_local_kernel[grid](
        delta, A, C, z if z is not None else x, dy, local, sdt,
        L, E, N, chunk, n_chunks,
        *strides3(delta), *strides3(z), *strides3(dy), *strides3(C), *A.stride(),
        HAS_Z=z is not None, ACC=tl_work, BLOCK_T=BT, BLOCK_E=BE, BLOCK_N=BN, num_warps=cfg["warps_bwd"],
    )
    gend = alloc((b, n_chunks, E, N), work, dev)
    dh0 = alloc((b, E, N), work, dev)
    init = dh_last.contiguous() if dh_last is not None else dh0
    carry_kernel[(triton.cdiv(E, cfg["carry_e"]), b)](
        sdt, local, A, init, gend, dh0, E, N, n_chunks, *A.stride(),
        HAS_INIT=dh_last is not None, REVERSE=True, WRITE_FINAL=True, ACC=tl_work,
        BLOCK_C=cfg["carry_c"], BLOCK_E=cfg["carry_e"], BLOCK_N=BN, num_warps=cfg["warps_carry"],
    )
    del local, sdt  # pass-1 scratch, free before the outputs are allocated
    dx = alloc((b, L, E), x.dtype, dev)
    ddelta = alloc((b, L, E), delta.dtype, dev)
    dz = alloc((b, L, E), z.dtype, dev) if z is not None else None
    dB_part = alloc((b, groups, L, N), work, dev)
    dC_part = alloc((b, groups, L, N), work, dev)
    _bwd_chunk_kernel[(n_chunks, groups, b)](
        x, delta, A, B, C, D if D is not None else x, z if z is not None else x, dy, starts, gend,
        dx, ddelta, dz if dz is not None else dx, dB_part, dC_part,
        L, E, N, chunk, n_chunks, groups, per_group,
        *strides3(x), *strides3(delta), *strides3(z), *strides3(dy), *strides3(B), *strides3(C), *A.stride(), D.stride(0) if D is not None else 0,
        HAS_D=D is not None, HAS_Z=z is not None, ACC=tl_work,
        BLOCK_T=BT, BLOCK_E=BE, BLOCK_N=BN, num_warps=cfg["warps_bwd"],
    )
    # fixed-order reduction over E-groups (deterministic; no atomics)
    dB = dB_part.sum(dim=1).to(B.dtype)
    dC = dC_part.sum(dim=1).to(C.dtype)
    return dx, ddelta, dB, dC, dz, dh0
