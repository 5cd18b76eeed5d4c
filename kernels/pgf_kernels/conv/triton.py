"""Triton causal depthwise conv1d + SiLU with carried inputs: forward, tangents (JVP) and input VJP,
as autograd functions with backward, jvp and vmap rules.

Semantics are `causal_conv1d_ref`'s (x (b, T, E), possibly strided; tail (b, E, K-1); weight
(E, K); bias (E,) or None). The kernels and their launchers are in `triton_kernels`; the
derivative rules shared with the CPU kernel are `conv.autograd`'s. Here: the jvp is one tangent
kernel call; under vmap of jvp with one primal and many tangents (the tangent engine:
`vmap(lambda t: jvp(f, primals, (t,)))`) the vmapped dimension is folded into the tangent
kernel's K directions, and under vmap of the backward (vmap of vjp) into the batch rows.
Derivatives of derivatives are refused.

Runs on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 was set before import (slow; the
tests). Compilation and speed on a GPU have not been checked where this was written.
"""

from __future__ import annotations

import torch

from pgf_kernels.conv import triton_kernels
from pgf_kernels.conv.autograd import causal_conv_function, fold, loop, moved, unfold
from pgf_kernels.conv.triton_kernels import conv_forward, conv_input_vjp, conv_tangent
from pgf_kernels.triton_common import interpreted

__all__ = ["TritonCausalConvFunction", "conv_forward", "conv_input_vjp", "conv_tangent", "interpreted"]


def _no_higher_order(*_):
    raise RuntimeError(
        "derivatives of the Triton causal conv's derivatives are not supported; use the reference kernels"
    )


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
            dx, dtail = TritonConvAdjointFunction.apply(fold(x, x_dim, V), fold(tail, tail_dim, V), weight, bias,
                                                        fold(dy, dy_dim, V))
            return (unfold(dx, V), unfold(dtail, V)), (0, 0)
        return loop(TritonConvAdjointFunction.apply, V, in_dims, (x, tail, weight, bias, dy))


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
            return loop(TritonConvTangentFunction.apply, V, in_dims, args)
        # one primal (the tangent engine): the vmapped dimension becomes more directions
        firsts = [moved(t, d, V) for t, d in zip(tangents, in_dims[4:])]  # (V, K, ...)
        K = next((m.shape[1] for m in firsts if m is not None), 1)
        folded = [None if m is None else m.reshape(V * K, *m.shape[2:]) for m in firsts]
        if all(m is None for m in folded):
            folded[0] = primals[0].new_zeros(V * K, *primals[0].shape)
        y_t = TritonConvTangentFunction.apply(*primals, *folded)
        return y_t.reshape(V, K, *y_t.shape[1:]), 0


def _tangent(x, tail, weight, bias, x_t, tail_t, weight_t, bias_t) -> torch.Tensor:
    """One direction (K = 1) through the tangent kernel; under vmap the tangent function folds
    the vmapped dimension into K."""
    tangents = [None if t is None else t.unsqueeze(0) for t in (x_t, tail_t, weight_t, bias_t)]
    return TritonConvTangentFunction.apply(x, tail, weight, bias, *tangents).squeeze(0)


# the launchers are looked up at each call, so a patched one (a test counting calls) is used
TritonCausalConvFunction = causal_conv_function("Triton", lambda *a: triton_kernels.conv_forward(*a),
                                                TritonConvAdjointFunction.apply, _tangent)
