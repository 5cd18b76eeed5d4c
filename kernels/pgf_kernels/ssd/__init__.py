"""The SSD (Mamba-2) scan with state in and out: `reference` (step by step, the ground truth),
`chunked` (the matrix form in PyTorch: the "cpu" backend) with its hand-written VJP (`chunked_vjp`), `triton` (`triton_forward`,
`triton_backward`, `triton_tangent`, `triton_util`), the autograd glue (`autograd`) and the ops
(`ops`): ssd_scan, ssd_scan_saving, ssd_scan_vjp."""

from pgf_kernels.ssd.chunked import ssd_scan_chunked
from pgf_kernels.ssd.ops import SsdResidual, ssd_backend, ssd_scan, ssd_scan_saving, ssd_scan_vjp
from pgf_kernels.ssd.reference import ssd_scan_ref

__all__ = [
    "SsdResidual",
    "ssd_backend",
    "ssd_scan",
    "ssd_scan_chunked",
    "ssd_scan_ref",
    "ssd_scan_saving",
    "ssd_scan_vjp",
]
