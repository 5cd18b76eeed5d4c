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


def _fold(t: torch.Tensor, dim: int | None, size: int) -> torch.Tensor:
    """t with its vmapped dimension (or a broadcast one) folded into its batch rows."""
    t = t.unsqueeze(0).expand(size, *t.shape) if dim is None else t.movedim(dim, 0)
    return t.reshape(size * t.shape[1], *t.shape[2:])


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
            outputs = [_LinearPart.apply(x_t if in_dims[0] is None else x_t.select(in_dims[0], i),
                                         tail_t if in_dims[1] is None else tail_t.select(in_dims[1], i),
                                         weight.select(in_dims[2], i)) for i in range(info.batch_size)]
            return torch.stack(outputs), 0
        V = info.batch_size
        y = _LinearPart.apply(_fold(x_t, in_dims[0], V), _fold(tail_t, in_dims[1], V), weight)
        return y.reshape(V, y.shape[0] // V, *y.shape[1:]), 0


def _linear_part(x_t: torch.Tensor, tail_t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return _LinearPart.apply(x_t, tail_t, weight)


class CpuCausalConvFunction(torch.autograd.Function):
    """(x, tail, weight, bias) -> silu(pre) by the compiled kernels: input VJP (x, tail), JVP, vmap."""

    @staticmethod
    def forward(x, tail, weight, bias):
        return conv_forward(x, tail, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.set_materialize_grads(False)  # absent tangents stay None (the weights' in the engine)
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx, dy):
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
            raise RuntimeError("the CPU causal conv gives input gradients only; use the reference kernels")
        if dy is None:
            return None, None, None, None
        x, tail, weight, bias = ctx.saved_tensors
        dx, dtail = conv_input_vjp(x, tail, weight, bias, dy)
        return dx, dtail, None, None

    @staticmethod
    def jvp(ctx, x_t, tail_t, weight_t, bias_t):
        x, tail, weight, bias = ctx.saved_tensors
        # through autograd functions: under jvp the saved inputs are functorch-wrapped
        pre = _linear_part(x, tail, weight) + (0 if bias is None else bias)
        sig = torch.sigmoid(pre)
        slope = sig * (1 + pre * (1 - sig))  # silu'(pre)
        parts = []
        if x_t is not None or tail_t is not None:
            parts.append(_linear_part(torch.zeros_like(x) if x_t is None else x_t,
                                      torch.zeros_like(tail) if tail_t is None else tail_t, weight))
        if weight_t is not None:
            parts.append(_linear_part(x, tail, weight_t))
        if bias_t is not None:
            parts.append(bias_t.expand_as(pre))
        if not parts:
            return torch.zeros_like(pre)
        pre_t = parts[0]
        for part in parts[1:]:
            pre_t = pre_t + part
        return slope * pre_t

    @staticmethod
    def vmap(info, in_dims, x, tail, weight, bias):
        x_dim, tail_dim, weight_dim, bias_dim = in_dims
        V = info.batch_size
        if weight_dim is None and bias_dim is None:  # rows are independent: fold the vmapped dim into them
            y = CpuCausalConvFunction.apply(_fold(x, x_dim, V), _fold(tail, tail_dim, V), weight, bias)
            return y.reshape(V, y.shape[0] // V, *y.shape[1:]), 0
        outputs = []
        for index in range(V):
            pick = lambda t, d: t if d is None or t is None else t.select(d, index)  # noqa: E731
            outputs.append(CpuCausalConvFunction.apply(pick(x, x_dim), pick(tail, tail_dim), pick(weight, weight_dim),
                                                       pick(bias, bias_dim)))
        return torch.stack(outputs), 0
