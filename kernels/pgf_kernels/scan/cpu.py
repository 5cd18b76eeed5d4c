"""Compiled CPU selective scan (numba): forward, adjoint (VJP) and K-direction tangent (JVP).

Layout and semantics are those of `selective_scan_ref`:
    x, delta, z : (b, L, E)     B, C : (b, L, N)     A : (E, N)     D : (E,)
    h0, h_last  : (b, E, N)     tangents carry a leading K (directions sharing one primal)

Recurrence:  a_t = exp(delta_t A);  h_t = a_t h_{t-1} + delta_t x_t B_t;
             y_t = (C_t . h_t + D x_t) * silu(z_t)

Why compiled: the reference materialises (L, E, N) tensors about ten times and its autograd
runs through Python loops; on a CPU that is memory traffic, not arithmetic. These kernels
keep the state of a block of channels in cache and read each input once:

* work split: `numba.prange` over (batch x blocks of `block` channels); inside, a sequential
  loop over positions. The forward and the adjoint keep a block's states state-major (N, block)
  and run their innermost loops over the block's channels (decay, update, readout and the
  adjoint's state cotangent vectorised; the adjoint's dB, dC are the only sums over channels);
  so does the tangent, which takes positions `TANGENT_SPAN` at a time: the primal's decays,
  states and gates over the span, then each direction over it (few input streams at once).
* forward: writes y, h_last and the state at every `chunk`-th position ("chunk starts",
  (b, ceil(L/chunk), E, N)); the adjoint recomputes states from them.
* adjoint: chunks right to left; each chunk's states and decays are recomputed from its start
  into a per-thread buffer (chunk+1, N, block), then the reverse recurrence
      lam_t = mu_t + g_t C_t,   mu_{t-1} = a_t lam_t,   mu_L = dh_last
  (g = dy * silu(z), the cotangent of the pre-gate output) gives dx, ddelta, dz, dh0 and the
  per-block partial sums of dB, dC (summed over blocks by torch, in a fixed order: the
  result does not depend on the thread count) and per-batch dA, dD (summed over the batch).
* tangent: the primal state and K tangent states advance together from h0, h0'; every tangent
  may be absent (zero).

Decays exp(delta A) (delta A <= 0; no division by a decay) and gates come from `cpu_exp.fast_exp`,
an exp LLVM vectorises (libm's scalar exp would keep its loop scalar).
States and sums are fp32, or fp64 for fp64 inputs (inputs are converted to that work dtype
first). The kernels themselves are in `cpu_kernels`; compiled on first use and cached on disk
(numba `cache=True`).
"""

from __future__ import annotations

import numpy as np
import torch

from pgf_kernels.cpu_common import alloc, numba, run_compiled, work_dtype
from pgf_kernels.scan import cpu_kernels

# positions between saved chunk states (the adjoint recomputes a chunk from its start): the
# states the adjoint keeps are E N / chunk per position. 256 halves 128's (a real-size Caduceus-ps
# gradient at 131 kb: 6.37 GB above the baseline against 7.38 GB, 1.48 against 1.72 times the
# layer inputs) at no measurable cost to the adjoint kernel (`python -m bench.cpu_scan_kernels
# --compare-with 47ced16`: bench/results/cpu-2core-scan-kernels-chunk256-vs-47ced16.json)
DEFAULT_CHUNK = 256
# work items (channels per block) of each kernel: their innermost loops run over a block's
# channels (vectorised), so wider blocks run faster until a block's buffers outgrow a core's L2;
# and the tangent's positions per span (its primal buffers: 3 x span x N x block values). Chosen
# with `python -m bench.cpu_scan_kernels` (2 cores, E 512, N 16 and E 64, N 8: blocks of 64 ran
# 15-25% faster than 32 and about as fast as 128; a span of 32 as fast as 16 or 64; against the
# kernels before: bench/results/cpu-2core-scan-kernels-*)
FORWARD_BLOCK = 64
BACKWARD_BLOCK = 64
TANGENT_BLOCK = 64
TANGENT_SPAN = 32


def _consts(work: torch.dtype):
    """Typed 0 and 1 for the kernels (a Python float literal would promote fp32 arithmetic to fp64)."""
    t = np.float64 if work == torch.float64 else np.float32
    return t(0.0), t(1.0)


def _np(t: torch.Tensor | None, work: torch.dtype, ndim: int) -> tuple[np.ndarray, bool]:
    """A contiguous numpy view in the work dtype, or an empty placeholder and False."""
    if t is None:
        return np.zeros((0,) * ndim, dtype=np.float64 if work == torch.float64 else np.float32), False
    return t.detach().to(dtype=work).contiguous().numpy(), True


def _check(x, delta, A, B, C, D, z, h0):
    if x.device.type != "cpu":
        raise RuntimeError(f"the CPU selective scan needs CPU tensors, got {x.device}")
    b, L, E = x.shape
    N = A.shape[1]
    if delta.shape != (b, L, E) or B.shape != (b, L, N) or C.shape != (b, L, N) or A.shape != (E, N):
        raise ValueError("selective scan: inconsistent shapes")
    if D is not None and D.shape != (E,):
        raise ValueError("selective scan: D must be (E,)")
    if z is not None and z.shape != (b, L, E):
        raise ValueError("selective scan: z must be (b, L, E)")
    if h0 is not None and h0.shape != (b, E, N):
        raise ValueError("selective scan: h0 must be (b, E, N)")
    return b, L, E, N


def _block(b: int, E: int, largest: int = 16) -> int:
    """Channels per work item: at most `largest`, small enough that every thread gets work."""
    threads = numba.get_num_threads()
    block = largest
    while block > 1 and b * (-(-E // block)) < threads:
        block //= 2
    return block


def default_chunk() -> int:
    return DEFAULT_CHUNK


def scan_forward(x, delta, A, B, C, D=None, z=None, h0=None, chunk: int | None = None):
    """(y (b, L, E) in x's dtype, h_last (b, E, N) in the work dtype, chunk starts (b, nc, E, N))."""
    b, L, E, N = _check(x, delta, A, B, C, D, z, h0)
    work = work_dtype(x)
    chunk = int(chunk or DEFAULT_CHUNK)
    n_chunks = max(1, -(-L // chunk))
    y = alloc((b, L, E), work)
    h_last = alloc((b, E, N), work)
    starts = alloc((b, n_chunks, E, N), work)
    if L == 0:
        h_last.copy_(h0 if h0 is not None else torch.zeros(b, E, N))
        starts.copy_(h_last.unsqueeze(1))
        return y.to(x.dtype), h_last, starts
    if b == 0 or E == 0:
        return y.to(x.dtype), h_last, starts
    arrays = [_np(t, work, nd) for t, nd in ((x, 3), (delta, 3), (A, 2), (B, 3), (C, 3))]
    Dn, has_D = _np(D, work, 1)
    zn, has_z = _np(z, work, 3)
    h0n, has_h0 = _np(h0, work, 3)
    run_compiled(
        cpu_kernels.forward_kernel,
        *(a for a, _ in arrays), Dn, has_D, zn, has_z, h0n, has_h0,
        y.numpy(), h_last.numpy(), starts.numpy(), chunk, _block(b, E, FORWARD_BLOCK), *_consts(work),
    )
    return y.to(x.dtype), h_last, starts


def scan_backward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk: int | None = None):
    """(dx, ddelta, dB, dC, dz or None, dh0, dA, dD or None), all in the work dtype."""
    b, L, E, N = _check(x, delta, A, B, C, D, z, None)
    work = work_dtype(x)
    chunk = int(chunk or DEFAULT_CHUNK)
    block = _block(b, E, BACKWARD_BLOCK)
    n_blocks = -(-E // block) if E else 0
    dx = alloc((b, L, E), work)
    ddt = alloc((b, L, E), work)
    dz = alloc((b, L, E), work) if z is not None else None
    dh0 = alloc((b, E, N), work)
    dB_part = alloc((b, n_blocks, L, N), work)
    dC_part = alloc((b, n_blocks, L, N), work)
    dA_part = alloc((b, E, N), work)
    dD_part = alloc((b, E), work)
    if L == 0 or b == 0 or E == 0:
        dh0.copy_(dh_last if dh_last is not None else torch.zeros(b, E, N))
        zeros = lambda *s: torch.zeros(*s, dtype=work)  # noqa: E731
        return (zeros(b, L, E), zeros(b, L, E), zeros(b, L, N), zeros(b, L, N),
                zeros(b, L, E) if z is not None else None, dh0, zeros(E, N), zeros(E) if D is not None else None)
    arrays = [_np(t, work, nd)[0] for t, nd in ((x, 3), (delta, 3), (A, 2), (B, 3), (C, 3))]
    Dn, has_D = _np(D, work, 1)
    zn, has_z = _np(z, work, 3)
    dyn = _np(dy if dy is not None else torch.zeros(b, L, E), work, 3)[0]
    dhn, has_dh = _np(dh_last, work, 3)
    run_compiled(
        cpu_kernels.backward_kernel,
        *arrays, Dn, has_D, zn, has_z, _np(starts, work, 4)[0], dyn, dhn, has_dh, chunk, block,
        dx.numpy(), ddt.numpy(), dB_part.numpy(), dC_part.numpy(),
        dz.numpy() if dz is not None else np.zeros((0, 0, 0), dtype=dx.numpy().dtype),
        dh0.numpy(), dA_part.numpy(), dD_part.numpy(), *_consts(work),
    )
    dB = dB_part.sum(1)
    dC = dC_part.sum(1)
    dA = dA_part.sum(0)
    dD = dD_part.sum(0) if D is not None else None
    return dx, ddt, dB, dC, dz, dh0, dA, dD


def scan_tangent(x, delta, A, B, C, D, z, h0, tangents, K: int | None = None):
    """K tangents of (y, h_last) in one pass: (y' (K, b, L, E) in x's dtype, h_last' (K, b, E, N)
    in the work dtype). tangents = (x', delta', A', B', C', D', z', h0'), each None (zero) or
    with a leading K: x', delta', z' (K, b, L, E); B', C' (K, b, L, N); A' (K, E, N); D' (K, E);
    h0' (K, b, E, N)."""
    b, L, E, N = _check(x, delta, A, B, C, D, z, h0)
    work = work_dtype(x)
    present = [t for t in tangents if t is not None]
    if K is None:
        if not present:
            raise ValueError("K must be given when every tangent is None")
        K = present[0].shape[0]
    if any(t.shape[0] != K for t in present):
        raise ValueError("every tangent must have the same leading K")
    xd, dtd, Ad, Bd, Cd, Dd, zd, h0d = tangents
    if D is None:
        Dd = None
    if z is None:
        zd = None
    yd = alloc((K, b, L, E), work)
    hd = alloc((K, b, E, N), work)
    if L == 0 or b == 0 or E == 0 or K == 0:
        if h0d is not None:
            hd.copy_(h0d.expand(K, b, E, N))
        else:
            hd.zero_()
        return yd.to(x.dtype), hd
    arrays = [_np(t, work, nd)[0] for t, nd in ((x, 3), (delta, 3), (A, 2), (B, 3), (C, 3))]
    Dn, has_D = _np(D, work, 1)
    zn, has_z = _np(z, work, 3)
    h0n, has_h0 = _np(h0, work, 3)

    def tangent(t, shape):
        return _np(None if t is None else t.expand(K, *shape), work, len(shape) + 1)

    tans = [
        tangent(xd, (b, L, E)), tangent(dtd, (b, L, E)), tangent(Ad, (E, N)), tangent(Bd, (b, L, N)),
        tangent(Cd, (b, L, N)), tangent(Dd, (E,)), tangent(zd, (b, L, E)), tangent(h0d, (b, E, N)),
    ]
    flat = [v for pair in tans for v in pair]
    run_compiled(
        cpu_kernels.tangent_kernel,
        *arrays, Dn, has_D, zn, has_z, h0n, has_h0, *flat, K, _block(b, E, TANGENT_BLOCK), TANGENT_SPAN, yd.numpy(), hd.numpy(), *_consts(work),
    )
    return yd.to(x.dtype), hd
