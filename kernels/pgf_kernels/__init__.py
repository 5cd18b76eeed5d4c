"""pgf_kernels: selective-scan and causal-conv kernels with carried state.

One folder per operation (as flash-linear-attention's fla/ops/<op>/), every backend beside its
pure-PyTorch reference (the ground truth the compiled kernels are tested against; it runs on any
device and is differentiable with plain autograd):

    scan/   ops.py: selective_scan, selective_scan_saving, selective_scan_vjp; reference.py;
            cpu.py + cpu_kernels.py (numba); triton.py (entry) + triton_forward / triton_tangent /
            triton_backward / triton_util.py; autograd.py (compiled kernels as autograd functions)
    conv/   ops.py: causal_conv1d; reference.py; cpu.py (numba)
    backends.py   backend names, `resolve_backend` (the "auto" rule), `unavailable_reason`, and
                  the process-wide default (`kernel_backend`, `set_kernel_backend`)
    cpu_common.py, cpu_exp.py, triton_common.py   what each op's compiled kernels share

Every op takes `backend=` ("reference", "cpu", "triton" or "auto"; None: the process-wide
default). Triton and numba are imported lazily, so a machine without them still works.
"""

import torch

from pgf_kernels import backends
from pgf_kernels.backends import (
    BACKENDS,
    cpu_unavailable_reason,
    get_kernel_backend,
    kernel_backend,
    set_kernel_backend,
    triton_unavailable_reason,
    unavailable_reason,
)
from pgf_kernels.conv import causal_conv1d, causal_conv1d_ref
from pgf_kernels.scan import (
    ScanResidual,
    scan_backend,
    selective_scan,
    selective_scan_ref,
    selective_scan_saving,
    selective_scan_vjp,
)


def resolve_backend(*args, **kwargs) -> str:
    """`backends.resolve_backend(name, device, parameter_grads=False)`; transitionally also the
    old form `resolve_backend(x, A, D, backend=None)`, the scan's backend for these tensors
    (`scan.scan_backend`)."""
    if args and isinstance(args[0], torch.Tensor):
        return scan_backend(*args, **kwargs)
    return backends.resolve_backend(*args, **kwargs)


def __getattr__(name: str):
    # transitional: `from pgf_kernels import cpu_scan` (tests/test_adjoint_engine.py) is the scan's CPU
    # backend module, imported on first use (numba is heavy)
    if name == "cpu_scan":
        from pgf_kernels.scan import cpu

        return cpu
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BACKENDS",
    "causal_conv1d",
    "causal_conv1d_ref",
    "cpu_unavailable_reason",
    "get_kernel_backend",
    "kernel_backend",
    "resolve_backend",
    "ScanResidual",
    "selective_scan",
    "selective_scan_saving",
    "selective_scan_vjp",
    "selective_scan_ref",
    "set_kernel_backend",
    "triton_unavailable_reason",
    "unavailable_reason",
]
