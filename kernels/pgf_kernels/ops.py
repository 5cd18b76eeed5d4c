"""`selective_scan`: one entry point, the PyTorch reference, the Triton or the CPU kernels behind it.

Layout and semantics are those of `selective_scan_ref`:
    x, delta, z (b, L, E); B, C (b, L, N); A (E, N); D (E,); h0, h_last (b, E, N).

Backends: "reference" (pure PyTorch, any device, differentiable in everything), "triton"
(the kernels in `triton_scan`: input gradients and tangents only, never dA or dD), "cpu"
(the compiled numba kernels in `cpu_scan`: CPU tensors; gradients for every input, dA and dD
included; tangents), and "auto" (the default): Triton for CUDA tensors when Triton is
importable and neither A nor D needs a gradient; for CPU tensors the compiled CPU kernels
when numba is importable and neither A nor D needs a gradient (training keeps the
reference, so its runs stay reproducible); the reference otherwise. The compiled kernels
run as autograd functions with backward, jvp and vmap rules (`pgf_kernels.functions`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch.profiler import record_function

from pgf_kernels.functions import KernelSet, scan_functions
from pgf_kernels.reference import causal_conv1d_ref, selective_scan_ref

BACKENDS = ("reference", "triton", "auto", "cpu")  # "cpu" last: messages keep their old prefix
_backend = "auto"


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def set_kernel_backend(name: str) -> None:
    """Set the process-wide default backend ("reference", "triton", "auto" or "cpu")."""
    global _backend
    _backend = _check_name(name)


def get_kernel_backend() -> str:
    """The process-wide default backend."""
    return _backend


@contextmanager
def kernel_backend(name: str):
    """Use backend `name` inside the block, then restore the previous default."""
    global _backend
    previous, _backend = _backend, _check_name(name)
    try:
        yield
    finally:
        _backend = previous


def _triton_module():
    """The kernel module, or None when Triton cannot be imported."""
    try:
        from pgf_kernels import triton_scan
    except ImportError:
        return None
    return triton_scan


def _cpu_module():
    """The compiled CPU kernel module, or None when numba cannot be imported."""
    try:
        from pgf_kernels import cpu_scan
    except ImportError:
        return None
    return cpu_scan if cpu_scan.available() else None


def cpu_unavailable_reason(device: torch.device) -> str | None:
    """Why the compiled CPU kernels cannot run on tensors on `device` (None when they can)."""
    if _cpu_module() is None:
        return "numba is not installed (pip install numba), use the reference kernels (--kernels reference)"
    if device.type != "cpu":
        return f"the CPU kernels need CPU tensors, got {device.type} tensors; use --kernels auto or triton"
    return None


def triton_unavailable_reason(device: torch.device) -> str | None:
    """Why the Triton kernels cannot run on tensors on `device` (None when they can).

    Checked before any launch: launching on a machine without a GPU fails deep inside Triton
    ("0 active drivers")."""
    module = _triton_module()
    if module is None:
        return "Triton is not installed (pip install triton), use the reference kernels (--kernels reference)"
    if device.type == "cuda":
        return None
    if device.type == "cpu" and module.interpreted():
        return None
    if device.type == "cpu":
        hint = (
            "TRITON_INTERPRET=1 is set but was not when pgf_kernels was imported"
            if os.environ.get("TRITON_INTERPRET") == "1"
            else "set TRITON_INTERPRET=1 before importing pgf to run them (slowly) on CPU"
        )
        return f"the Triton kernels need CUDA tensors, got CPU tensors ({hint}); use the reference kernels (--kernels reference)"
    return f"the Triton kernels do not support {device.type} tensors; use the reference kernels (--kernels reference)"


def _wants_parameter_grad(A: torch.Tensor, D: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and (A.requires_grad or (D is not None and D.requires_grad))


def resolve_backend(x: torch.Tensor, A: torch.Tensor, D: torch.Tensor | None, backend: str | None = None) -> str:
    """"reference", "triton" or "cpu" for these tensors; raises RuntimeError when "triton" or
    "cpu" is forced where it cannot run."""
    name = _check_name(backend or _backend)
    if name == "reference":
        return name
    if name == "auto":
        if x.is_cuda and _triton_module() is not None and not _wants_parameter_grad(A, D):
            return "triton"
        if x.device.type == "cpu" and _cpu_module() is not None and not _wants_parameter_grad(A, D):
            return "cpu"
        return "reference"
    if name == "cpu":
        reason = cpu_unavailable_reason(x.device)
        if reason is not None:
            raise RuntimeError(f"kernel backend 'cpu' cannot run here: {reason}")
        return "cpu"
    reason = triton_unavailable_reason(x.device)
    if reason is not None:
        raise RuntimeError(f"kernel backend 'triton' cannot run here: {reason}")
    return "triton"


def selective_scan(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    *,
    backend: str | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y (b, L, E), h_last (b, E, N)) of the selective scan from state h0, as
    `selective_scan_ref`, computed by `backend` (default: the current default backend).
    `chunk` (positions per chunk) changes only the order of work."""
    name = resolve_backend(x, A, D, backend)
    if name == "reference":
        return selective_scan_ref(x, delta, A, B, C, D, z, h0, chunk=chunk)
    function = _CpuScanFunction if name == "cpu" else _ScanFunction
    y, h_last, _ = function.apply(x, delta, A, B, C, D, z, h0, chunk)
    return y, h_last


class ScanResidual(NamedTuple):
    """What `selective_scan_vjp` needs of a compiled scan call besides its inputs."""

    backend: str  # "cpu" or "triton"
    starts: torch.Tensor  # chunk-start states (b, n_chunks, E, N)
    chunk: int | None


def selective_scan_saving(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    *,
    backend: str | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, ScanResidual | None]:
    """`selective_scan` without autograd, and its residual: what `selective_scan_vjp` needs to pull
    cotangents back through this call later without running it again (the compiled kernels'
    chunk-start states, a few % of the inputs' size); None for the reference (recompute instead)."""
    name = resolve_backend(x, A, D, backend)
    with torch.no_grad(), record_function("pgf_kernels::scan_forward"):
        if name == "reference":
            y, h_last = selective_scan_ref(x, delta, A, B, C, D, z, h0, chunk=chunk)
            return y, h_last, None
        forward = _cpu_forward if name == "cpu" else _triton_forward
        y, h_last, starts = forward(x, delta, A, B, C, D, z, h0, chunk)
    return y, h_last, ScanResidual(name, starts, chunk)


def selective_scan_vjp(
    residual: ScanResidual,
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    dy: torch.Tensor,
    dh_last: torch.Tensor | None,
) -> tuple[torch.Tensor, ...]:
    """(dx, ddelta, dB, dC, dz | None, dh0) of the `selective_scan_saving` call that gave `residual`
    (same inputs), for the cotangents dy of y and dh_last of h_last (None: zero); dh0 in the state's
    dtype, the others in their inputs'."""
    backward = _cpu_backward if residual.backend == "cpu" else _triton_backward
    with torch.no_grad(), record_function("pgf_kernels::scan_vjp"):
        grads = backward(x, delta, A, B, C, D, z, residual.starts.to(x.device), dy, dh_last, residual.chunk)[:6]
    inputs = (x, delta, B, C, z)
    return (*(None if g is None else g.to(t.dtype) for g, t in zip(grads[:5], inputs)), grads[5])


def causal_conv1d(
    x: torch.Tensor,
    tail: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """silu(causal depthwise conv1d) of x (b, T, E) after `tail` (b, E, K-1), as `causal_conv1d_ref`.

    The compiled CPU kernel runs where the scan's would ("cpu", or "auto" on CPU tensors with
    numba) unless the weight or bias wants a gradient (it gives input gradients only); the
    reference everywhere else (there is no Triton convolution)."""
    name = _check_name(backend or _backend)
    wants_weight_grad = torch.is_grad_enabled() and (weight.requires_grad or (bias is not None and bias.requires_grad))
    compiled = name == "cpu" or (name == "auto" and x.device.type == "cpu" and _cpu_module() is not None)
    if compiled and not wants_weight_grad:
        if name == "cpu":
            reason = cpu_unavailable_reason(x.device)
            if reason is not None:
                raise RuntimeError(f"kernel backend 'cpu' cannot run here: {reason}")
        from pgf_kernels.cpu_conv import CpuCausalConvFunction

        return CpuCausalConvFunction.apply(x, tail, weight, bias)
    return causal_conv1d_ref(x, tail, weight, bias)


# ----------------------------------------------------------------------------------------------
# the compiled kernels as autograd functions (pgf_kernels.functions); imported on first call


def _triton_forward(x, delta, A, B, C, D, z, h0, chunk):
    from pgf_kernels import triton_scan

    return triton_scan.scan_forward(x, delta, A, B, C, D, z, h0, chunk=chunk)


def _triton_tangent(primals, tangents, K, chunk):
    from pgf_kernels import triton_scan

    _, _, y_t, h_t = triton_scan.scan_tangent(*primals, tangents, K=K, chunk=chunk, write_primal=False)
    return y_t, h_t


def _triton_backward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk):
    from pgf_kernels import triton_scan

    return (*triton_scan.scan_backward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk=chunk), None, None)


def _cpu_forward(x, delta, A, B, C, D, z, h0, chunk):
    from pgf_kernels import cpu_scan

    return cpu_scan.scan_forward(x, delta, A, B, C, D, z, h0, chunk=chunk)


def _cpu_tangent(primals, tangents, K, chunk):
    from pgf_kernels import cpu_scan

    return cpu_scan.scan_tangent(*primals, tangents, K=K)


def _cpu_backward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk):
    from pgf_kernels import cpu_scan

    return cpu_scan.scan_backward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk=chunk)


_ScanFunction, _TangentFunction, _AdjointFunction = scan_functions(
    KernelSet("Triton", _triton_forward, _triton_tangent, _triton_backward, parameter_grads=False)
)
_CpuScanFunction, _CpuTangentFunction, _CpuAdjointFunction = scan_functions(
    KernelSet("CPU", _cpu_forward, _cpu_tangent, _cpu_backward, parameter_grads=True)
)
