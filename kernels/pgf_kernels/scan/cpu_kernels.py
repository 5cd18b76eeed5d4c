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
        # state-major like the forward: states, decays and the state cotangent of a block are
        # (N, block), so every inner loop runs over the block's channels (vectorised); the
        # per-state sums over channels (dB, dC) are the only horizontal reductions
        b, L, E = x.shape
        N = A.shape[1]
        n_blocks = (E + block - 1) // block
        n_chunks = (L + chunk - 1) // chunk
        for job in prange(b * n_blocks):
            bi = job // n_blocks
            kb = job % n_blocks
            e0 = kb * block
            e1 = min(E, e0 + block)
            nb = e1 - e0
            hs = np.empty((chunk + 1, N, nb), dtype=dh0.dtype)  # states h_{t0-1} .. h_{t1-1}
            ds = np.empty((chunk, N, nb), dtype=dh0.dtype)  # decays a_t
            At = np.empty((N, nb), dtype=dh0.dtype)
            mu = np.zeros((N, nb), dtype=dh0.dtype)
            dA = np.zeros((N, nb), dtype=dh0.dtype)
            dD = np.zeros(nb, dtype=dh0.dtype)
            d = np.empty(nb, dtype=dh0.dtype)
            xv = np.empty(nb, dtype=dh0.dtype)
            g = np.empty(nb, dtype=dh0.dtype)
            u = np.empty(nb, dtype=dh0.dtype)
            sB = np.empty(nb, dtype=dh0.dtype)
            sA = np.empty(nb, dtype=dh0.dtype)
            for n in range(N):
                for k in range(nb):
                    At[n, k] = A[e0 + k, n]
                    if has_dh_last:
                        mu[n, k] = dh_last[bi, e0 + k, n]
            for c in range(n_chunks - 1, -1, -1):
                t0 = c * chunk
                t1 = min(L, t0 + chunk)
                for k in range(nb):
                    for n in range(N):
                        hs[0, n, k] = starts[bi, c, e0 + k, n]
                for t in range(t0, t1):
                    i = t - t0
                    for k in range(nb):
                        d[k] = dt[bi, t, e0 + k]
                        u[k] = d[k] * x[bi, t, e0 + k]
                    for n in range(N):
                        bn = B[bi, t, n]
                        for k in range(nb):
                            a = fast_exp(d[k] * At[n, k])
                            ds[i, n, k] = a
                            hs[i + 1, n, k] = a * hs[i, n, k] + u[k] * bn
                for t in range(t1 - 1, t0 - 1, -1):
                    i = t - t0
                    for k in range(nb):
                        d[k] = dt[bi, t, e0 + k]
                        xv[k] = x[bi, t, e0 + k]
                        g[k] = dy[bi, t, e0 + k]
                    if has_z:
                        # the pre-gate output, then g becomes its cotangent (dy silu(z))
                        for k in range(nb):
                            sB[k] = D[e0 + k] * xv[k] if has_D else zero
                        for n in range(N):
                            cn = C[bi, t, n]
                            for k in range(nb):
                                sB[k] += cn * hs[i + 1, n, k]
                        for k in range(nb):
                            zv = z[bi, t, e0 + k]
                            sg = one / (one + fast_exp(-zv))
                            dz[bi, t, e0 + k] = g[k] * sB[k] * sg * (one + zv * (one - sg))
                            g[k] = g[k] * zv * sg
                    for k in range(nb):
                        u[k] = d[k] * xv[k]
                        sB[k] = zero
                        sA[k] = zero
                    for n in range(N):
                        cn = C[bi, t, n]
                        bn = B[bi, t, n]
                        dBn = zero
                        dCn = zero
                        for k in range(nb):
                            lam = mu[n, k] + g[k] * cn
                            a = ds[i, n, k]
                            dCn += g[k] * hs[i + 1, n, k]
                            dBn += lam * u[k]
                            sB[k] += lam * bn
                            w = lam * hs[i, n, k] * a
                            sA[k] += w * At[n, k]
                            dA[n, k] += w * d[k]
                            mu[n, k] = a * lam
                        dB_part[bi, kb, t, n] = dBn
                        dC_part[bi, kb, t, n] = dCn
                    for k in range(nb):
                        dx[bi, t, e0 + k] = d[k] * sB[k] + (D[e0 + k] * g[k] if has_D else zero)
                        ddt[bi, t, e0 + k] = xv[k] * sB[k] + sA[k]
                        dD[k] += g[k] * xv[k]
            for k in range(nb):
                dD_part[bi, e0 + k] = dD[k]
                for n in range(N):
                    dh0[bi, e0 + k, n] = mu[n, k]
                    dA_part[bi, e0 + k, n] = dA[n, k]

    @njit(parallel=True, fastmath=FASTMATH, cache=True)
    def tangent_kernel(
        x, dt, A, B, C, D, has_D, z, has_z, h0, has_h0,
        xd, has_xd, dtd, has_dtd, Ad, has_Ad, Bd, has_Bd, Cd, has_Cd, Dd, has_Dd, zd, has_zd, h0d, has_h0d,
        K, block, span, yd, hd_last, zero, one,
    ):
        # state-major like the forward: the primal state (N, block) and the K tangent states
        # (K, N, block) of a block; every inner loop runs over the block's channels (vectorised).
        # Positions go `span` at a time: the primal's decays, states and gates for the span first,
        # then each direction over the span, so a direction's inputs are read as a few sequential
        # streams (all K directions per position would be 6 K streams at once, too many to prefetch)
        b, L, E = x.shape
        N = A.shape[1]
        n_blocks = (E + block - 1) // block
        for job in prange(b * n_blocks):
            bi = job // n_blocks
            e0 = (job % n_blocks) * block
            e1 = min(E, e0 + block)
            nb = e1 - e0
            h = np.zeros((N, nb), dtype=hd_last.dtype)
            hd = np.zeros((K, N, nb), dtype=hd_last.dtype)
            At = np.empty((N, nb), dtype=hd_last.dtype)
            Adt = np.zeros((K if has_Ad else 0, N, nb), dtype=hd_last.dtype)
            a = np.empty((span, N, nb), dtype=hd_last.dtype)  # the span's decays, a h_{t-1}, h_t
            ahp = np.empty((span, N, nb), dtype=hd_last.dtype)
            hv = np.empty((span, N, nb), dtype=hd_last.dtype)
            d = np.empty((span, nb), dtype=hd_last.dtype)
            xv = np.empty((span, nb), dtype=hd_last.dtype)
            gate = np.empty((span, nb), dtype=hd_last.dtype)
            dgate = np.empty((span, nb), dtype=hd_last.dtype)
            acc = np.empty(nb, dtype=hd_last.dtype)
            dd = np.empty(nb, dtype=hd_last.dtype)
            du = np.empty(nb, dtype=hd_last.dtype)
            acc_d = np.empty(nb, dtype=hd_last.dtype)
            for n in range(N):
                for k in range(nb):
                    At[n, k] = A[e0 + k, n]
                    if has_h0:
                        h[n, k] = h0[bi, e0 + k, n]
            for kk in range(K):
                for n in range(N):
                    for k in range(nb):
                        if has_h0d:
                            hd[kk, n, k] = h0d[kk, bi, e0 + k, n]
                        if has_Ad:
                            Adt[kk, n, k] = Ad[kk, e0 + k, n]
            for t0 in range(0, L, span):
                t1 = min(L, t0 + span)
                for t in range(t0, t1):
                    i = t - t0
                    for k in range(nb):
                        d[i, k] = dt[bi, t, e0 + k]
                        xv[i, k] = x[bi, t, e0 + k]
                        acc[k] = D[e0 + k] * xv[i, k] if has_D else zero
                    for n in range(N):
                        bn = B[bi, t, n]
                        cn = C[bi, t, n]
                        for k in range(nb):
                            av = fast_exp(d[i, k] * At[n, k])
                            ap = av * h[n, k]
                            hvv = ap + d[i, k] * xv[i, k] * bn
                            a[i, n, k] = av
                            ahp[i, n, k] = ap
                            hv[i, n, k] = hvv
                            h[n, k] = hvv
                            acc[k] += cn * hvv
                    for k in range(nb):
                        if has_z:
                            zv = z[bi, t, e0 + k]
                            sg = one / (one + fast_exp(-zv))
                            gate[i, k] = zv * sg
                            dgate[i, k] = acc[k] * sg * (one + zv * (one - sg))  # d(acc silu(z)) / dz
                        else:
                            gate[i, k] = one
                            dgate[i, k] = zero
                for kk in range(K):
                    for t in range(t0, t1):
                        i = t - t0
                        # this direction's d(delta) and d(delta x); then a state loop like the primal's
                        for k in range(nb):
                            dd[k] = dtd[kk, bi, t, e0 + k] if has_dtd else zero
                            xdv = xd[kk, bi, t, e0 + k] if has_xd else zero
                            du[k] = dd[k] * xv[i, k] + d[i, k] * xdv
                            acc_d[k] = zero
                            if has_D:
                                acc_d[k] = D[e0 + k] * xdv
                                if has_Dd:
                                    acc_d[k] += Dd[kk, e0 + k] * xv[i, k]
                        for n in range(N):
                            bn = B[bi, t, n]
                            cn = C[bi, t, n]
                            bk = Bd[kk, bi, t, n] if has_Bd else zero
                            ck = Cd[kk, bi, t, n] if has_Cd else zero
                            if has_Ad:
                                for k in range(nb):
                                    dlog = dd[k] * At[n, k] + d[i, k] * Adt[kk, n, k]
                                    hdv = (a[i, n, k] * hd[kk, n, k] + dlog * ahp[i, n, k] + du[k] * bn
                                           + d[i, k] * xv[i, k] * bk)
                                    hd[kk, n, k] = hdv
                                    acc_d[k] += cn * hdv + ck * hv[i, n, k]
                            else:
                                for k in range(nb):
                                    hdv = (a[i, n, k] * hd[kk, n, k] + (dd[k] * At[n, k]) * ahp[i, n, k] + du[k] * bn
                                           + d[i, k] * xv[i, k] * bk)
                                    hd[kk, n, k] = hdv
                                    acc_d[k] += cn * hdv + ck * hv[i, n, k]
                        for k in range(nb):
                            v = acc_d[k] * gate[i, k]
                            if has_z and has_zd:
                                v += dgate[i, k] * zd[kk, bi, t, e0 + k]
                            yd[kk, bi, t, e0 + k] = v
            for kk in range(K):
                for k in range(nb):
                    for n in range(N):
                        hd_last[kk, bi, e0 + k, n] = hd[kk, n, k]
