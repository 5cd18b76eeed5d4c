"""The selective scan with state in and out: `reference` (PyTorch), `cpu` (numba: `cpu_kernels`
and their wrappers), `triton` (`triton_forward`, `triton_tangent`, `triton_backward`), the
autograd glue (`autograd`) and the ops (`ops`): selective_scan, selective_scan_saving,
selective_scan_vjp."""

from pgf_kernels.scan.ops import (
    ScanResidual,
    scan_backend,
    selective_scan,
    selective_scan_saving,
    selective_scan_vjp,
)
from pgf_kernels.scan.reference import selective_scan_loop, selective_scan_ref

__all__ = [
    "ScanResidual",
    "scan_backend",
    "selective_scan",
    "selective_scan_loop",
    "selective_scan_ref",
    "selective_scan_saving",
    "selective_scan_vjp",
]
