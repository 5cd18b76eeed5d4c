"""Compiled CPU causal depthwise conv1d + SiLU (numba): forward and input VJP.

Semantics are `causal_conv1d_ref`'s: x (b, T, E), tail (b, E, K-1) (the inputs before the
tile), weight (E, K), bias (E,) or None ->

    y[:, t, e] = silu(pre[:, t, e]),   pre[:, t, e] = bias[e] + sum_k weight[e, k] u[:, t + k, e],

u = [tail^T ; x]. The reference works in (b, E, T): a concatenation, a transposed copy, the
convolution and a SiLU pass, each over the whole tile. Here one pass over (b, T, E) with the
channels innermost (contiguous loops LLVM vectorises); work is split over (batch x blocks of
positions). The VJP for x and tail recomputes `pre` (no activation is saved besides x and tail):

    g = dy silu'(pre),   du[:, i, e] = sum_k weight[e, k] g[:, i - k, e]   (0 <= i - k < T),

dx = du[:, K-1:], dtail = du[:, :K-1]. No weight or bias gradient (`causal_conv1d` keeps the
reference when one is wanted). Sums are in fp32, or fp64 for fp64 inputs.
"""

from __future__ import annotations

import numpy as np
import torch

from pgf_kernels.conv.autograd import causal_conv_function, fold, loop, unfold
from pgf_kernels.cpu_common import FASTMATH, alloc, run_compiled, work_dtype

try:
    from numba import njit, prange

    from pgf_kernels.cpu_exp import fast_exp
except ImportError:  # pragma: no cover - `causal_conv1d` checks numba before it dispatches here
    njit = None

POSITIONS_PER_JOB = 256

if njit is not None:

    @njit(fastmath=FASTMATH, cache=True)
    def _pre_at(x, tail, wT, bias, has_bias, bi, t, acc, zero):
        """acc[e] = pre[bi, t, e] for every channel (channels innermost: vectorised)."""
        E = x.shape[2]
        K = wT.shape[0]
        for e in range(E):
            acc[e] = bias[e] if has_bias else zero
        for k in range(K):
            i = t + k - (K - 1)
            if i >= 0:
                for e in range(E):
                    acc[e] += wT[k, e] * x[bi, i, e]
            else:
                for e in range(E):
                    acc[e] += wT[k, e] * tail[bi, K - 1 + i, e]

    @njit(cache=True)
    def _job_span(job, n_blocks, total):
        """(row, start, end) of work item `job` of rows x blocks of POSITIONS_PER_JOB positions."""
        start = (job % n_blocks) * POSITIONS_PER_JOB
        return job // n_blocks, start, min(total, start + POSITIONS_PER_JOB)

    @njit(parallel=True, fastmath=FASTMATH, cache=True)
    def _pre_kernel(x, tail, wT, bias, has_bias, out, apply_silu, zero, one):
        """out = pre, or silu(pre) with apply_silu. x (b, T, E), tail (b, K-1, E), wT (K, E)."""
        b, T, E = x.shape
        K = wT.shape[0]
        n_blocks = (T + POSITIONS_PER_JOB - 1) // POSITIONS_PER_JOB
        for job in prange(b * n_blocks):
            bi, t0, t1 = _job_span(job, n_blocks, T)
            acc = np.empty(E, dtype=out.dtype)
            for t in range(t0, t1):
                _pre_at(x, tail, wT, bias, has_bias, bi, t, acc, zero)
                if apply_silu:
                    for e in range(E):
                        out[bi, t, e] = acc[e] / (one + fast_exp(-acc[e]))
                else:
                    for e in range(E):
                        out[bi, t, e] = acc[e]

    @njit(parallel=True, fastmath=FASTMATH, cache=True)
    def _input_vjp_kernel(x, tail, wT, bias, has_bias, dy, g, dx, dtail, zero, one):
        """g = dy silu'(pre) into the scratch g (b, T, E); then dx (b, T, E), dtail (b, K-1, E)."""
        b, T, E = x.shape
        K = wT.shape[0]
        n_blocks = (T + POSITIONS_PER_JOB - 1) // POSITIONS_PER_JOB
        for job in prange(b * n_blocks):
            bi, t0, t1 = _job_span(job, n_blocks, T)
            acc = np.empty(E, dtype=dx.dtype)
            for t in range(t0, t1):
                _pre_at(x, tail, wT, bias, has_bias, bi, t, acc, zero)
                for e in range(E):
                    sig = one / (one + fast_exp(-acc[e]))
                    g[bi, t, e] = dy[bi, t, e] * sig * (one + acc[e] * (one - sig))
        total = K - 1 + T  # positions of u = [tail ; x]
        n_blocks = (total + POSITIONS_PER_JOB - 1) // POSITIONS_PER_JOB
        for job in prange(b * n_blocks):
            bi, i0, i1 = _job_span(job, n_blocks, total)
            acc = np.empty(E, dtype=dx.dtype)
            for i in range(i0, i1):
                for e in range(E):
                    acc[e] = zero
                for k in range(K):
                    t = i - k
                    if 0 <= t < T:
                        for e in range(E):
                            acc[e] += wT[k, e] * g[bi, t, e]
                if i >= K - 1:
                    for e in range(E):
                        dx[bi, i - (K - 1), e] = acc[e]
                else:
                    for e in range(E):
                        dtail[bi, i, e] = acc[e]


def _prepare(x: torch.Tensor, tail: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    if x.device.type != "cpu":
        raise RuntimeError(f"the CPU causal conv needs CPU tensors, got {x.device}")
    b, T, E = x.shape
    K = weight.shape[1]
    if weight.shape != (E, K) or tail.shape != (b, E, K - 1) or (bias is not None and bias.shape != (E,)):
        raise ValueError("causal conv1d: inconsistent shapes")
    work = work_dtype(x)
    np_dtype = np.float64 if work == torch.float64 else np.float32
    arrays = (
        x.detach().to(work).contiguous().numpy(),
        tail.detach().to(work).transpose(1, 2).contiguous().numpy(),
        weight.detach().to(work).t().contiguous().numpy(),
        bias.detach().to(work).contiguous().numpy() if bias is not None else np.zeros(0, dtype=np_dtype),
    )
    return arrays, bias is not None, work, np_dtype(0.0), np_dtype(1.0)


def conv_forward(x, tail, weight, bias, silu: bool = True) -> torch.Tensor:
    """silu(pre) (or pre with silu=False), (b, T, E) contiguous, in x's dtype."""
    (xn, tn, wn, bn), has_bias, work, zero, one = _prepare(x, tail, weight, bias)
    out = alloc(x.shape, work)
    if out.numel():
        run_compiled(_pre_kernel, xn, tn, wn, bn, has_bias, out.numpy(), silu, zero, one)
    return out.to(x.dtype)


def conv_input_vjp(x, tail, weight, bias, dy) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx (b, T, E), dtail (b, E, K-1)) for the cotangent dy of silu(pre)."""
    (xn, tn, wn, bn), has_bias, work, zero, one = _prepare(x, tail, weight, bias)
    b, T, E = x.shape
    K = weight.shape[1]
    g = torch.empty((b, T, E), dtype=work)
    dx = alloc((b, T, E), work)
    dtail = alloc((b, K - 1, E), work)
    if dx.numel() + dtail.numel():
        dyn = dy.detach().to(work).contiguous().numpy()
        run_compiled(_input_vjp_kernel, xn, tn, wn, bn, has_bias, dyn, g.numpy(), dx.numpy(), dtail.numpy(), zero, one)
    return dx.to(x.dtype), dtail.transpose(1, 2).to(tail.dtype)


class _LinearPart(torch.autograd.Function):
    """The convolution without bias or SiLU, (x_t, tail_t, weight) -> (b, T, E): what tangents go
    through. Under vmap (many directions) they are folded into the batch for one kernel call."""

    @staticmethod
    def forward(x_t, tail_t, weight):
        return conv_forward(x_t, tail_t, weight, None, silu=False)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def vmap(info, in_dims, x_t, tail_t, weight):
        if in_dims[2] is not None:  # a batch of weights: one call each
            return loop(_LinearPart.apply, info.batch_size, in_dims, (x_t, tail_t, weight))
        V = info.batch_size
        return unfold(_LinearPart.apply(fold(x_t, in_dims[0], V), fold(tail_t, in_dims[1], V), weight), V), 0


def _tangent(x, tail, weight, bias, x_t, tail_t, weight_t, bias_t) -> torch.Tensor:
    """silu'(pre) pre': the linear part of the convolution run on the tangents (autograd functions
    throughout: under jvp the saved inputs are functorch-wrapped)."""
    pre = _LinearPart.apply(x, tail, weight) + (0 if bias is None else bias)
    sig = torch.sigmoid(pre)
    slope = sig * (1 + pre * (1 - sig))  # silu'(pre)
    parts = []
    if x_t is not None or tail_t is not None:
        parts.append(_LinearPart.apply(torch.zeros_like(x) if x_t is None else x_t,
                                       torch.zeros_like(tail) if tail_t is None else tail_t, weight))
    if weight_t is not None:
        parts.append(_LinearPart.apply(x, tail, weight_t))
    if bias_t is not None:
        parts.append(bias_t.expand_as(pre))
    pre_t = parts[0]
    for part in parts[1:]:
        pre_t = pre_t + part
    return slope * pre_t


# the launchers are looked up at each call, so a patched one (a test counting calls) is used
CpuCausalConvFunction = causal_conv_function("CPU", lambda *a: conv_forward(*a), lambda *a: conv_input_vjp(*a), _tangent)
