"""`causal_conv1d`: the PyTorch reference, the compiled CPU kernel or the Triton kernels behind one
entry point."""

from __future__ import annotations

import torch

from pgf_kernels.backends import requested, resolve_backend, triton_unavailable_reason
from pgf_kernels.conv.reference import causal_conv1d_ref


def conv_backend(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, backend: str | None = None) -> str:
    """"reference", "cpu" or "triton": the kernel `causal_conv1d` runs for these tensors when asked
    for `backend` (None: "auto").

    The compiled kernels run where the scan's would ("cpu", or "auto" on CPU tensors with numba;
    "triton", or "auto" on CUDA tensors with Triton; "triton" on CPU tensors only in Triton's
    interpreter, TRITON_INTERPRET=1) unless the weight or bias wants a gradient (both give input
    gradients only): then the reference, as everywhere else. A forced "cpu" that cannot run on
    x's device is a RuntimeError; so is a forced "triton", even when a weight gradient is wanted
    (as `ssd_backend`)."""
    name = requested(backend)
    if name == "triton":
        reason = triton_unavailable_reason(x.device)
        if reason is not None:
            raise RuntimeError(f"kernel backend 'triton' cannot run here: {reason}")
    weight_grads = torch.is_grad_enabled() and (weight.requires_grad or (bias is not None and bias.requires_grad))
    if weight_grads:
        return "reference"
    return resolve_backend(name, x.device)


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
    name = conv_backend(x, weight, bias, backend)
    if name == "cpu":
        from pgf_kernels.conv import cpu

        return cpu.CpuCausalConvFunction.apply(x, tail, weight, bias)
    if name == "triton":
        from pgf_kernels.conv import triton

        return triton.TritonCausalConvFunction.apply(x, tail, weight, bias)
    return causal_conv1d_ref(x, tail, weight, bias)
