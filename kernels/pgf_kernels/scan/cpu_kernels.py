"""The compiled CPU selective-scan kernels (numba): forward, adjoint (VJP), K-direction tangent (JVP).

The tensor-level wrappers that call them are in `pgf_kernels.scan.cpu` (its docstring states the
layout and the algorithm). Arrays are numpy, in the work dtype (fp32, or fp64 for fp64 inputs);
`zero` and `one` are typed constants of that dtype.
"""

from __future__ import annotations

import numpy as np

from pgf_kernels.cpu_common import FASTMATH, available

if available():
    from numba import njit, prange

    from pgf_kernels.cpu_exp import fast_exp

    @njit(parallel=True, fastmath=FASTMATH, cache=True)
    def forward_kernel(x, dt, A, B, C, D, has_D, z, has_z, h0, has_h0, y, h_last, starts, chunk, block, zero, one):
        # the state of a block is kept state-major, h[n, e]: the innermost loop runs over the block's
        # channels, which LLVM vectorises (decay, update and readout) with no horizontal sum per channel
        b, L, E = x.shape
        N = A.shape[1]
        n_blocks = (E + block - 1) // block
        for job in prange(b * n_blocks):
            bi = job // n_blocks
            e0 = (job % n_blocks) * block
            e1 = min(E, e0 + block)
            nb = e1 - e0
            h = np.zeros((N, nb), dtype=h_last.dtype)
            At = np.empty((N, nb), dtype=h_last.dtype)
            d = np.empty(nb, dtype=h_last.dtype)
            u = np.empty(nb, dtype=h_last.dtype)
            acc = np.empty(nb, dtype=h_last.dtype)
            for n in range(N):
                for k in range(nb):
                    At[n, k] = A[e0 + k, n]
                    if has_h0:
                        h[n, k] = h0[bi, e0 + k, n]
            for t in range(L):
                if t % chunk == 0:
                    c = t // chunk
                    for k in range(nb):
                        for n in range(N):
                            starts[bi, c, e0 + k, n] = h[n, k]
                for k in range(nb):
                    d[k] = dt[bi, t, e0 + k]
                    u[k] = d[k] * x[bi, t, e0 + k]
                    acc[k] = D[e0 + k] * x[bi, t, e0 + k] if has_D else zero
                for n in range(N):
                    bn = B[bi, t, n]
                    cn = C[bi, t, n]
                    for k in range(nb):
                        hv = fast_exp(d[k] * At[n, k]) * h[n, k] + u[k] * bn
                        h[n, k] = hv
                        acc[k] += cn * hv
                if has_z:
                    for k in range(nb):
                        zv = z[bi, t, e0 + k]
                        acc[k] *= zv / (one + fast_exp(-zv))
                for k in range(nb):
                    y[bi, t, e0 + k] = acc[k]
            for k in range(nb):
                for n in range(N):
                    h_last[bi, e0 + k, n] = h[n, k]

    @njit(parallel=True, fastmath=FASTMATH, cache=True)
    def backward_kernel(
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

    @njit(parallel=True, fastmath=FASTMATH, cache=True)
    def tangent_kernel(
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

