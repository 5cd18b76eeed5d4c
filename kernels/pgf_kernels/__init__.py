"""pgf_kernels: selective-scan kernels with carried state.

Every kernel has a pure-PyTorch reference beside it. The references run
anywhere (CPU, CUDA) and are the ground truth the Triton kernels are tested
against; they are differentiable with plain autograd. `selective_scan`
dispatches between the reference and the Triton kernels (`triton_scan`,
imported lazily so that a machine without Triton still works).
"""

from pgf_kernels.ops import (
    BACKENDS,
    get_kernel_backend,
    kernel_backend,
    resolve_backend,
    selective_scan,
    set_kernel_backend,
    triton_unavailable_reason,
)
from pgf_kernels.reference import selective_scan_ref

__all__ = [
    "BACKENDS",
    "get_kernel_backend",
    "kernel_backend",
    "resolve_backend",
    "selective_scan",
    "selective_scan_ref",
    "set_kernel_backend",
    "triton_unavailable_reason",
]
