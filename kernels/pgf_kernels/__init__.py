"""pgf_kernels: selective-scan (and causal-conv) kernels with carried state.

Every kernel has a pure-PyTorch reference beside it. The references run
anywhere (CPU, CUDA) and are the ground truth the Triton kernels are tested
against; they are differentiable with plain autograd. `selective_scan`
dispatches between the reference, the Triton kernels (`triton_scan`) and the
compiled CPU kernels (`cpu_scan`, numba), both imported lazily so that a machine
without Triton or numba still works.
"""

from pgf_kernels.ops import (
    BACKENDS,
    causal_conv1d,
    cpu_unavailable_reason,
    get_kernel_backend,
    kernel_backend,
    resolve_backend,
    ScanResidual,
    selective_scan,
    selective_scan_saving,
    selective_scan_vjp,
    set_kernel_backend,
    triton_unavailable_reason,
)
from pgf_kernels.reference import causal_conv1d_ref, selective_scan_ref

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
]
