"""The autograd function of a compiled causal conv backend, built from its kernels.

Both compiled backends (numba on CPU, Triton) give the same derivative rules:

  * backward: gradients for x and the tail only (the VJP kernel recomputes pre from the inputs,
    the only thing saved); a wanted weight or bias gradient is a RuntimeError (`causal_conv1d`
    keeps the reference then);
  * jvp: tangents of x, the tail, the weight and the bias, any of them absent (None);
  * vmap of the primal: the vmapped dimension folded into the batch rows (rows are
    independent); batched weights or biases run one call per slice.

What differs is passed in: the forward and input-VJP launchers and the tangent rule.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def moved(t: torch.Tensor | None, dim: int | None, size: int) -> torch.Tensor | None:
    """t with its vmapped dimension first (expanded, without a copy, when it has none)."""
    if t is None:
        return None
    return t.unsqueeze(0).expand(size, *t.shape) if dim is None else t.movedim(dim, 0)


def fold(t: torch.Tensor | None, dim: int | None, size: int) -> torch.Tensor | None:
    """t with its vmapped dimension (or a broadcast one) folded into its leading dimension."""
    first = moved(t, dim, size)
    return None if first is None else first.reshape(size * first.shape[1], *first.shape[2:])


def unfold(t: torch.Tensor, size: int) -> torch.Tensor:
    """The inverse of `fold`: (size * b, ...) -> (size, b, ...)."""
    return t.reshape(size, t.shape[0] // size, *t.shape[1:])


def loop(function: Callable, size: int, in_dims, args):
    """The general vmap rule: `function` on each slice of the vmapped dimension, stacked."""
    results = [function(*(a.select(d, i) if d is not None and a is not None else a for a, d in zip(args, in_dims)))
               for i in range(size)]
    if isinstance(results[0], tuple):
        outputs = tuple(torch.stack([r[j] for r in results]) for j in range(len(results[0])))
        return outputs, (0,) * len(outputs)
    return torch.stack(results), 0


# (x, tail, weight, bias) -> silu(pre)
Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
# (x, tail, weight, bias, dy) -> (dx, dtail)
InputVjp = Callable[..., tuple[torch.Tensor, torch.Tensor]]
# (x, tail, weight, bias, x', tail', weight', bias') -> y', at least one tangent present
Tangent = Callable[..., torch.Tensor]


def causal_conv_function(backend: str, forward: Forward, input_vjp: InputVjp, tangent: Tangent) -> type:
    """A torch.autograd.Function (x, tail, weight, bias) -> silu(pre) whose forward is `forward`,
    backward `input_vjp` and jvp `tangent`; `backend` names it in errors and its class name."""

    class CausalConvFunction(torch.autograd.Function):
        @staticmethod
        def forward(x, tail, weight, bias):
            return forward(x, tail, weight, bias)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.set_materialize_grads(False)  # absent tangents stay None (the weights' in the engine)
            ctx.save_for_backward(*inputs)
            ctx.save_for_forward(*inputs)

        @staticmethod
        def backward(ctx, dy):
            if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
                raise RuntimeError(f"the {backend} causal conv gives input gradients only; use the reference kernels")
            if dy is None:
                return None, None, None, None
            dx, dtail = input_vjp(*ctx.saved_tensors, dy)
            return dx if ctx.needs_input_grad[0] else None, dtail if ctx.needs_input_grad[1] else None, None, None

        @staticmethod
        def jvp(ctx, x_t, tail_t, weight_t, bias_t):
            x, tail, weight, bias = ctx.saved_tensors
            if bias is None:
                bias_t = None
            if x_t is None and tail_t is None and weight_t is None and bias_t is None:
                return x.new_zeros(x.shape)
            return tangent(x, tail, weight, bias, x_t, tail_t, weight_t, bias_t)

        @staticmethod
        def vmap(info, in_dims, x, tail, weight, bias):
            V = info.batch_size
            x_dim, tail_dim, weight_dim, bias_dim = in_dims
            if weight_dim is None and bias_dim is None:  # rows are independent: fold into the batch
                y = CausalConvFunction.apply(fold(x, x_dim, V), fold(tail, tail_dim, V), weight, bias)
                return unfold(y, V), 0
            return loop(CausalConvFunction.apply, V, in_dims, (x, tail, weight, bias))

    name = f"{backend.capitalize()}CausalConvFunction"
    CausalConvFunction.__name__ = CausalConvFunction.__qualname__ = name
    CausalConvFunction.__doc__ = (f"(x, tail, weight, bias) -> silu(pre) by the {backend} kernels: "
                                  "input VJP (x, tail), JVP, vmap (`conv.autograd`).")
    return CausalConvFunction
