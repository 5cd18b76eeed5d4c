"""`causal_conv1d`: the PyTorch reference or the compiled CPU kernel behind one entry point."""

from __future__ import annotations

import torch

from pgf_kernels.backends import requested, resolve_backend
from pgf_kernels.conv.reference import causal_conv1d_ref


def conv_backend(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, backend: str | None = None) -> str:
    """"reference" or "cpu": the kernel `causal_conv1d` runs for these tensors when asked for
    `backend` (None: "auto").

    The compiled CPU kernel runs where the scan's would ("cpu", or "auto" on CPU tensors with
    numba) unless the weight or bias wants a gradient (it gives input gradients only); the
    reference everywhere else (there is no Triton convolution). A forced "cpu" that cannot run
    on x's device is a RuntimeError."""
    name = requested(backend)
    weight_grads = torch.is_grad_enabled() and (weight.requires_grad or (bias is not None and bias.requires_grad))
    if weight_grads or name == "triton":
        return "reference"
    return "cpu" if resolve_backend(name, x.device) == "cpu" else "reference"


def causal_conv1d(
    x: torch.Tensor,
    tail: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """silu(causal depthwise conv1d) of x (b, T, E) after `tail` (b, E, K-1), as `causal_conv1d_ref`,
    computed by the kernel `conv_backend` picks for `backend` (None: "auto")."""
    if conv_backend(x, weight, bias, backend) == "cpu":
        from pgf_kernels.conv import cpu

        return cpu.CpuCausalConvFunction.apply(x, tail, weight, bias)
    return causal_conv1d_ref(x, tail, weight, bias)
