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
  loop over positions, channels of the block, then states (the innermost, contiguous loop).
* forward: writes y, h_last and the state at every `chunk`-th position ("chunk starts",
  (b, ceil(L/chunk), E, N)); the adjoint recomputes states from them.
* adjoint: chunks right to left; each chunk's states and decays are recomputed from its start
  into a per-thread buffer (chunk+1, block, N), then the reverse recurrence
      lam_t = mu_t + g_t C_t,   mu_{t-1} = a_t lam_t,   mu_L = dh_last
  (g = dy * silu(z), the cotangent of the pre-gate output) gives dx, ddelta, dz, dh0 and the
  per-block partial sums of dB, dC (summed over blocks by torch, in a fixed order: the
  result does not depend on the thread count) and per-batch dA, dD (summed over the batch).
* tangent: the primal state and K tangent states advance together from h0, h0'; every tangent
  may be absent (zero).

Decays exp(delta A) (delta A <= 0; no division by a decay) and gates come from `cpu_exp.fast_exp`,
an exp LLVM vectorises across the N states (libm's scalar exp would keep that loop scalar).
States and sums are fp32, or fp64 for fp64 inputs (inputs are converted to that work dtype
first). Kernels are compiled on first use and cached on disk (numba `cache=True`).
"""

from __future__ import annotations

import numpy as np
import torch

try:  # numba is a dependency; the import guard only lets `ops` fall back when it is broken
    import numba
    from numba import njit, prange

    from pgf_kernels.cpu_exp import fast_exp
except ImportError as error:  # pragma: no cover - exercised only without numba
    numba = None
    _IMPORT_ERROR: Exception | None = error
else:
    _IMPORT_ERROR = None

# Tests set this so every output and scratch buffer starts as NaN: a forgotten write fails.
NAN_FILL = False

DEFAULT_CHUNK = 128  # positions between saved states (adjoint recompute length)
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}  # no nnan/ninf: NaN and inf propagate


def available() -> bool:
    return numba is not None


def unavailable_reason() -> str | None:
    if numba is None:
        return f"numba cannot be imported ({_IMPORT_ERROR}); pip install numba"
    return None


if numba is not None:

    @njit(parallel=True, fastmath=_FASTMATH, cache=True)
    def _forward_kernel(x, dt, A, B, C, D, has_D, z, has_z, h0, has_h0, y, h_last, starts, chunk, block, zero, one):
        b, L, E = x.shape
        N = A.shape[1]
        n_blocks = (E + block - 1) // block
        for job in prange(b * n_blocks):
            bi = job // n_blocks
            e0 = (job % n_blocks) * block
            e1 = min(E, e0 + block)
            h = np.zeros((e1 - e0, N), dtype=h_last.dtype)
            gate = np.empty(e1 - e0, dtype=h_last.dtype)
            if has_h0:
                for e in range(e0, e1):
                    for n in range(N):
                        h[e - e0, n] = h0[bi, e, n]
            for t in range(L):
                if t % chunk == 0:
                    c = t // chunk
                    for e in range(e0, e1):
                        for n in range(N):
                            starts[bi, c, e, n] = h[e - e0, n]
                for e in range(e0, e1):
                    d = dt[bi, t, e]
                    xv = x[bi, t, e]
                    u = d * xv
                    acc = zero
                    for n in range(N):
                        hv = fast_exp(d * A[e, n]) * h[e - e0, n] + u * B[bi, t, n]
                        h[e - e0, n] = hv
                        acc += C[bi, t, n] * hv
                    if has_D:
                        acc += D[e] * xv
                    y[bi, t, e] = acc
                if has_z:  # the gate in its own loop over channels, which LLVM vectorises
                    for e in range(e0, e1):
                        gate[e - e0] = z[bi, t, e] / (one + fast_exp(-z[bi, t, e]))
                    for e in range(e0, e1):
                        y[bi, t, e] *= gate[e - e0]
            for e in range(e0, e1):
                for n in range(N):
                    h_last[bi, e, n] = h[e - e0, n]

    @njit(parallel=True, fastmath=_FASTMATH, cache=True)
    def _backward_kernel(
        x, dt, A, B, C, D, has_D, z, has_z, starts, dy, dh_last, has_dh_last, chunk, block,
        dx, ddt, dB_part, dC_part, dz, dh0, dA_part, dD_part, zero, one,
    ):
        b, L, E = x.shape
        N = A.shape[1]
        n_blocks = (E + block - 1) // block
        n_chunks = (L + chunk - 1) // chunk
        for job in prange(b * n_blocks):
            bi = job // n_blocks
            k = job % n_blocks
            e0 = k * block
            e1 = min(E, e0 + block)
            nb = e1 - e0
            hs = np.empty((chunk + 1, nb, N), dtype=dh0.dtype)  # states h_{t0-1} .. h_{t1-1}
            ds = np.empty((chunk, nb, N), dtype=dh0.dtype)  # decays a_t
            mu = np.zeros((nb, N), dtype=dh0.dtype)
            dA = np.zeros((nb, N), dtype=dh0.dtype)
            dD = np.zeros(nb, dtype=dh0.dtype)
            dBt = np.empty(N, dtype=dh0.dtype)
            dCt = np.empty(N, dtype=dh0.dtype)
            if has_dh_last:
                for e in range(e0, e1):
                    for n in range(N):
                        mu[e - e0, n] = dh_last[bi, e, n]
            for c in range(n_chunks - 1, -1, -1):
                t0 = c * chunk
                t1 = min(L, t0 + chunk)
                for e in range(e0, e1):
                    for n in range(N):
                        hs[0, e - e0, n] = starts[bi, c, e, n]
                for t in range(t0, t1):
                    i = t - t0
                    for e in range(e0, e1):
                        d = dt[bi, t, e]
                        u = d * x[bi, t, e]
                        for n in range(N):
                            a = fast_exp(d * A[e, n])
                            ds[i, e - e0, n] = a
                            hs[i + 1, e - e0, n] = a * hs[i, e - e0, n] + u * B[bi, t, n]
                for t in range(t1 - 1, t0 - 1, -1):
                    i = t - t0
                    for n in range(N):
                        dBt[n] = zero
                        dCt[n] = zero
                    for e in range(e0, e1):
                        j = e - e0
                        d = dt[bi, t, e]
                        xv = x[bi, t, e]
                        g = dy[bi, t, e]
                        if has_z:
                            acc = zero
                            for n in range(N):
                                acc += C[bi, t, n] * hs[i + 1, j, n]
                            if has_D:
                                acc += D[e] * xv
                            zv = z[bi, t, e]
                            sg = one / (one + fast_exp(-zv))
                            dz[bi, t, e] = g * acc * sg * (one + zv * (one - sg))
                            g = g * zv * sg
                        u = d * xv
                        sB = zero
                        sA = zero
                        for n in range(N):
                            lam = mu[j, n] + g * C[bi, t, n]
                            hp = hs[i, j, n]
                            a = ds[i, j, n]
                            dCt[n] += g * hs[i + 1, j, n]
                            dBt[n] += lam * u
                            sB += lam * B[bi, t, n]
                            w = lam * hp * a
                            sA += w * A[e, n]
                            dA[j, n] += w * d
                            mu[j, n] = a * lam
                        dx[bi, t, e] = d * sB + (D[e] * g if has_D else zero)
                        ddt[bi, t, e] = xv * sB + sA
                        dD[j] += g * xv
                    for n in range(N):
                        dB_part[bi, k, t, n] = dBt[n]
                        dC_part[bi, k, t, n] = dCt[n]
            for e in range(e0, e1):
                dD_part[bi, e] = dD[e - e0]
                for n in range(N):
                    dh0[bi, e, n] = mu[e - e0, n]
                    dA_part[bi, e, n] = dA[e - e0, n]

    @njit(parallel=True, fastmath=_FASTMATH, cache=True)
    def _tangent_kernel(
        x, dt, A, B, C, D, has_D, z, has_z, h0, has_h0,
        xd, has_xd, dtd, has_dtd, Ad, has_Ad, Bd, has_Bd, Cd, has_Cd, Dd, has_Dd, zd, has_zd, h0d, has_h0d,
        K, block, yd, hd_last, zero, one,
    ):
        b, L, E = x.shape
        N = A.shape[1]
        n_blocks = (E + block - 1) // block
        for job in prange(b * n_blocks):
            bi = job // n_blocks
            e0 = (job % n_blocks) * block
            e1 = min(E, e0 + block)
            nb = e1 - e0
            h = np.zeros((nb, N), dtype=hd_last.dtype)
            hd = np.zeros((nb, K, N), dtype=hd_last.dtype)  # N innermost: the state loops are contiguous
            a_n = np.empty(N, dtype=hd_last.dtype)  # this position's decays, a h_{t-1}, h_t
            ahp_n = np.empty(N, dtype=hd_last.dtype)
            hv_n = np.empty(N, dtype=hd_last.dtype)
            Bk = np.zeros((K, N), dtype=hd_last.dtype)
            Ck = np.zeros((K, N), dtype=hd_last.dtype)
            if has_h0:
                for e in range(e0, e1):
                    for n in range(N):
                        h[e - e0, n] = h0[bi, e, n]
            if has_h0d:
                for kk in range(K):
                    for e in range(e0, e1):
                        for n in range(N):
                            hd[e - e0, kk, n] = h0d[kk, bi, e, n]
            for t in range(L):
                if has_Bd:
                    for kk in range(K):
                        for n in range(N):
                            Bk[kk, n] = Bd[kk, bi, t, n]
                if has_Cd:
                    for kk in range(K):
                        for n in range(N):
                            Ck[kk, n] = Cd[kk, bi, t, n]
                for e in range(e0, e1):
                    j = e - e0
                    d = dt[bi, t, e]
                    xv = x[bi, t, e]
                    u = d * xv
                    acc = zero
                    for n in range(N):
                        a = fast_exp(d * A[e, n])
                        ahp = a * h[j, n]
                        hv = ahp + u * B[bi, t, n]
                        a_n[n] = a
                        ahp_n[n] = ahp
                        hv_n[n] = hv
                        h[j, n] = hv
                        acc += C[bi, t, n] * hv
                    if has_D:
                        acc += D[e] * xv
                    gate = one
                    dgate = zero
                    if has_z:
                        zv = z[bi, t, e]
                        sg = one / (one + fast_exp(-zv))
                        gate = zv * sg
                        dgate = acc * sg * (one + zv * (one - sg))  # d(acc silu(z)) / dz
                    for kk in range(K):
                        # this direction's d(delta) and d(delta x); then a state loop like the primal's
                        dd = dtd[kk, bi, t, e] if has_dtd else zero
                        du = dd * xv + (d * xd[kk, bi, t, e] if has_xd else zero)
                        acc_d = zero
                        if has_Ad:
                            for n in range(N):
                                dlog = dd * A[e, n] + d * Ad[kk, e, n]
                                hdv = a_n[n] * hd[j, kk, n] + dlog * ahp_n[n] + du * B[bi, t, n] + u * Bk[kk, n]
                                hd[j, kk, n] = hdv
                                acc_d += C[bi, t, n] * hdv + Ck[kk, n] * hv_n[n]
                        else:
                            for n in range(N):
                                hdv = a_n[n] * hd[j, kk, n] + (dd * A[e, n]) * ahp_n[n] + du * B[bi, t, n] + u * Bk[kk, n]
                                hd[j, kk, n] = hdv
                                acc_d += C[bi, t, n] * hdv + Ck[kk, n] * hv_n[n]
                        if has_D:
                            acc_d += D[e] * (xd[kk, bi, t, e] if has_xd else zero)
                            if has_Dd:
                                acc_d += Dd[kk, e] * xv
                        acc_d *= gate
                        if has_z and has_zd:
                            acc_d += dgate * zd[kk, bi, t, e]
                        yd[kk, bi, t, e] = acc_d
            for kk in range(K):
                for e in range(e0, e1):
                    for n in range(N):
                        hd_last[kk, bi, e, n] = hd[e - e0, kk, n]


# ----------------------------------------------------------------------------------------------
# tensor-level wrappers


def work_dtype(x: torch.Tensor) -> torch.dtype:
    """fp64 for fp64 inputs, fp32 otherwise (as the reference promotes)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _consts(work: torch.dtype):
    """Typed 0 and 1 for the kernels (a Python float literal would promote fp32 arithmetic to fp64)."""
    t = np.float64 if work == torch.float64 else np.float32
    return t(0.0), t(1.0)


def _alloc(shape, dtype) -> torch.Tensor:
    if NAN_FILL:
        return torch.full(shape, float("nan"), dtype=dtype)
    return torch.empty(shape, dtype=dtype)


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


def _block(b: int, E: int) -> int:
    """Channels per work item: at most 16, small enough that every thread gets work."""
    threads = numba.get_num_threads()
    block = 16
    while block > 1 and b * (-(-E // block)) < threads:
        block //= 2
    return block


def run_compiled(kernel, *args) -> None:
    """Call a numba kernel; when its on-disk cache cannot be written (a full disk, a read-only
    cache folder) the kernel, already compiled in memory by then, runs without the cache."""
    try:
        kernel(*args)
    except OSError:
        kernel._cache.disable()  # numba's per-function disk cache; compiling never needs it
        kernel(*args)


def default_chunk() -> int:
    return DEFAULT_CHUNK


def scan_forward(x, delta, A, B, C, D=None, z=None, h0=None, chunk: int | None = None):
    """(y (b, L, E) in x's dtype, h_last (b, E, N) in the work dtype, chunk starts (b, nc, E, N))."""
    b, L, E, N = _check(x, delta, A, B, C, D, z, h0)
    work = work_dtype(x)
    chunk = int(chunk or DEFAULT_CHUNK)
    n_chunks = max(1, -(-L // chunk))
    y = _alloc((b, L, E), work)
    h_last = _alloc((b, E, N), work)
    starts = _alloc((b, n_chunks, E, N), work)
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
        _forward_kernel,
        *(a for a, _ in arrays), Dn, has_D, zn, has_z, h0n, has_h0,
        y.numpy(), h_last.numpy(), starts.numpy(), chunk, _block(b, E), *_consts(work),
    )
    return y.to(x.dtype), h_last, starts


def scan_backward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk: int | None = None):
    """(dx, ddelta, dB, dC, dz or None, dh0, dA, dD or None), all in the work dtype."""
    b, L, E, N = _check(x, delta, A, B, C, D, z, None)
    work = work_dtype(x)
    chunk = int(chunk or DEFAULT_CHUNK)
    block = _block(b, E)
    n_blocks = -(-E // block) if E else 0
    dx = _alloc((b, L, E), work)
    ddt = _alloc((b, L, E), work)
    dz = _alloc((b, L, E), work) if z is not None else None
    dh0 = _alloc((b, E, N), work)
    dB_part = _alloc((b, n_blocks, L, N), work)
    dC_part = _alloc((b, n_blocks, L, N), work)
    dA_part = _alloc((b, E, N), work)
    dD_part = _alloc((b, E), work)
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
        _backward_kernel,
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
    yd = _alloc((K, b, L, E), work)
    hd = _alloc((K, b, E, N), work)
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
        _tangent_kernel,
        *arrays, Dn, has_D, zn, has_z, h0n, has_h0, *flat, K, _block(b, E), yd.numpy(), hd.numpy(), *_consts(work),
    )
    return yd.to(x.dtype), hd
