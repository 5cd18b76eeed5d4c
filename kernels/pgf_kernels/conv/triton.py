"""Triton causal depthwise conv1d + SiLU with carried inputs: forward, tangents (JVP) and input VJP,
as autograd functions with backward, jvp and vmap rules.

Semantics are `causal_conv1d_ref`'s (x (b, T, E), possibly strided; tail (b, E, K-1); weight
(E, K); bias (E,) or None). The kernels and their launchers are in `triton_kernels`. Derivatives
mirror the CPU kernel's function (`conv.cpu.CpuCausalConvFunction`):

  * backward: gradients for x and the tail only (the VJP kernel recomputes pre from the inputs,
    the only thing saved); a wanted weight or bias gradient is a RuntimeError (`causal_conv1d`
    keeps the reference then);
  * jvp: tangents of x, the tail, the weight and the bias (any of them absent), one kernel call;
  * vmap: of the primal, the vmapped dimension folded into the batch rows; of jvp with one
    primal and many tangents (the tangent engine: `vmap(lambda t: jvp(f, primals, (t,)))`), the
    vmapped dimension folded into the tangent kernel's K directions; of the backward (vmap of
    vjp), into the batch rows. Batched weights or biases run one call per slice.
Derivatives of derivatives are refused.

Runs on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 was set before import (slow; the
tests). Compilation and speed on a GPU have not been checked where this was written.
"""

from __future__ import annotations

import torch

from pgf_kernels.conv import triton_kernels
from pgf_kernels.conv.triton_kernels import conv_forward, conv_input_vjp, conv_tangent
from pgf_kernels.triton_common import interpreted

__all__ = ["TritonCausalConvFunction", "conv_forward", "conv_input_vjp", "conv_tangent", "interpreted"]


def _no_higher_order(*_):
    raise RuntimeError(
        "derivatives of the Triton causal conv's derivatives are not supported; use the reference kernels"
    )


def _moved(t: torch.Tensor | None, dim: int | None, size: int) -> torch.Tensor | None:
    """t with its vmapped dimension first (expanded, without a copy, when it has none)."""
    if t is None:
        return None
    return t.unsqueeze(0).expand(size, *t.shape) if dim is None else t.movedim(dim, 0)


def _fold(t: torch.Tensor | None, dim: int | None, size: int) -> torch.Tensor | None:
    """t with its vmapped dimension (or a broadcast one) folded into its leading dimension."""
    moved = _moved(t, dim, size)
    return None if moved is None else moved.reshape(size * moved.shape[1], *moved.shape[2:])


def _unfold(t: torch.Tensor, size: int) -> torch.Tensor:
    return t.reshape(size, t.shape[0] // size, *t.shape[1:])


def _loop(function, size: int, in_dims, args):
    """The general vmap rule: `function` on each slice of the vmapped dimension, stacked."""
    results = []
    for index in range(size):
        results.append(function(*(a.select(d, index) if d is not None and a is not None else a for a, d in zip(args, in_dims))))
    if isinstance(results[0], tuple):
        outputs = tuple(torch.stack([r[j] for r in results]) for j in range(len(results[0])))
        return outputs, (0,) * len(outputs)
    return torch.stack(results), 0


class TritonConvAdjointFunction(torch.autograd.Function):
    """(x, tail, weight, bias, dy) -> (dx (b, T, E), dtail (b, E, K-1)) by the VJP kernel."""

    @staticmethod
    def forward(x, tail, weight, bias, dy):
        return triton_kernels.conv_input_vjp(x, tail, weight, bias, dy)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    backward = staticmethod(_no_higher_order)
    jvp = staticmethod(_no_higher_order)

    @staticmethod
    def vmap(info, in_dims, x, tail, weight, bias, dy):
        V = info.batch_size
        x_dim, tail_dim, weight_dim, bias_dim, dy_dim = in_dims
        if weight_dim is None and bias_dim is None:  # rows are independent: fold into the batch
            dx, dtail = TritonConvAdjointFunction.apply(_fold(x, x_dim, V), _fold(tail, tail_dim, V), weight, bias,
                                                        _fold(dy, dy_dim, V))
            return (_unfold(dx, V), _unfold(dtail, V)), (0, 0)
        return _loop(TritonConvAdjointFunction.apply, V, in_dims, (x, tail, weight, bias, dy))


class TritonConvTangentFunction(torch.autograd.Function):
    """(x, tail, weight, bias, x', tail', weight', bias') -> y' (K, b, T, E): tangents with a
    leading K (directions sharing the primal), each None when absent."""

    @staticmethod
    def forward(x, tail, weight, bias, x_t, tail_t, weight_t, bias_t):
        tangents = (x_t, tail_t, weight_t, bias_t)
        K = next((t.shape[0] for t in tangents if t is not None), 1)
        return triton_kernels.conv_tangent(x, tail, weight, bias, tangents, K=K)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    backward = staticmethod(_no_higher_order)
    jvp = staticmethod(_no_higher_order)

    @staticmethod
    def vmap(info, in_dims, *args):
        V = info.batch_size
        primals, tangents = args[:4], args[4:]
        if any(d is not None for d in in_dims[:4]):
            return _loop(TritonConvTangentFunction.apply, V, in_dims, args)
        # one primal (the tangent engine): the vmapped dimension becomes more directions
        moved = [_moved(t, d, V) for t, d in zip(tangents, in_dims[4:])]  # (V, K, ...)
        K = next((m.shape[1] for m in moved if m is not None), 1)
        folded = [None if m is None else m.reshape(V * K, *m.shape[2:]) for m in moved]
        if all(m is None for m in folded):
            folded[0] = primals[0].new_zeros(V * K, *primals[0].shape)
        y_t = TritonConvTangentFunction.apply(*primals, *folded)
        return y_t.reshape(V, K, *y_t.shape[1:]), 0


class TritonCausalConvFunction(torch.autograd.Function):
    """(x, tail, weight, bias) -> silu(pre) by the Triton kernels: input VJP (x, tail), JVP, vmap."""

    @staticmethod
    def forward(x, tail, weight, bias):
        return triton_kernels.conv_forward(x, tail, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.set_materialize_grads(False)  # absent tangents stay None (the weights' in the engine)
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx, dy):
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
            raise RuntimeError("the Triton causal conv gives input gradients only; use the reference kernels")
        if dy is None:
            return None, None, None, None
        x, tail, weight, bias = ctx.saved_tensors
        dx, dtail = TritonConvAdjointFunction.apply(x, tail, weight, bias, dy)
        return dx if ctx.needs_input_grad[0] else None, dtail if ctx.needs_input_grad[1] else None, None, None

    @staticmethod
    def jvp(ctx, x_t, tail_t, weight_t, bias_t):
        x, tail, weight, bias = ctx.saved_tensors
        tangents = [None if t is None else t.unsqueeze(0) for t in (x_t, tail_t, weight_t, bias_t)]
        if bias is None:
            tangents[3] = None
        if all(t is None for t in tangents):
            return x.new_zeros(x.shape)
        # one direction (K = 1); under vmap the tangent function folds the vmapped dim into K
        return TritonConvTangentFunction.apply(x, tail, weight, bias, *tangents).squeeze(0)

    @staticmethod
    def vmap(info, in_dims, x, tail, weight, bias):
        V = info.batch_size
        x_dim, tail_dim, weight_dim, bias_dim = in_dims
        if weight_dim is None and bias_dim is None:  # rows are independent: fold into the batch
            y = TritonCausalConvFunction.apply(_fold(x, x_dim, V), _fold(tail, tail_dim, V), weight, bias)
            return _unfold(y, V), 0
        return _loop(TritonCausalConvFunction.apply, V, in_dims, (x, tail, weight, bias))
