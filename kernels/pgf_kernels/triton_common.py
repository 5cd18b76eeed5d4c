"""What the Triton kernels of every op share: the interpreter flag, buffers, the work dtype and
exp / sigmoid device functions.

Kernels run on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 was set before Triton's
kernels were defined (at import; slow; for tests).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

# Tests set this so every output and scratch buffer starts as NaN: a forgotten write fails.
NAN_FILL = False


def interpreted() -> bool:
    """True when the kernels were built for the Triton interpreter (they run on CPU tensors)."""
    return type(exp).__name__ == "InterpretedFunction"


def alloc(shape, dtype, device) -> torch.Tensor:
    """An output or scratch buffer; NaN-filled when the tests ask (NAN_FILL), so a missed write fails."""
    if NAN_FILL:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def work_dtypes(x: torch.Tensor) -> tuple[torch.dtype, object]:
    """Work dtype: fp64 for fp64 inputs, fp32 otherwise (as the reference promotes)."""
    return (torch.float64, tl.float64) if x.dtype == torch.float64 else (torch.float32, tl.float32)


@triton.jit
def exp(x):
    if _PRECISE_EXP:
        return libdevice.exp(x)
    else:
        return tl.exp(x)


@triton.jit
def sigmoid(z):
    return 1.0 / (1.0 + exp(-z))


# Compiled for CUDA, exponentials go through libdevice (__nv_expf, ~1 ulp): tl.exp lowers fp32
# to ex2.approx (~2 ulp), whose error compounds over long runs of decays near 1. The
# interpreter cannot call libdevice; its tl.exp is numpy's, precise already. (Read by `exp`
# when a kernel is compiled or interpreted, so it is set here, once `exp` exists.)
_PRECISE_EXP = tl.constexpr(not interpreted())
