"""pgf_kernels: selective-scan and causal-conv kernels with carried state.

One folder per operation (as flash-linear-attention's fla/ops/<op>/), every backend beside its
pure-PyTorch reference (the ground truth the compiled kernels are tested against; it runs on any
device and is differentiable with plain autograd):

    scan/   ops.py: selective_scan, selective_scan_saving, selective_scan_vjp; reference.py;
            cpu.py + cpu_kernels.py (numba); triton.py (entry) + triton_forward / triton_tangent /
            triton_backward / triton_util.py; autograd.py (compiled kernels as autograd functions)
    conv/   ops.py: causal_conv1d; reference.py; cpu.py (numba); triton.py + triton_kernels.py
    ssd/    ops.py: ssd_scan, ssd_scan_saving, ssd_scan_vjp (the Mamba-2 scan); reference.py;
            chunked.py + chunked_vjp.py (the "cpu" backend: plain PyTorch); triton*.py; autograd.py
    backends.py   backend names, `resolve_backend` (the "auto" rule), `unavailable_reason`
    cpu_common.py, cpu_exp.py, triton_common.py   what each op's compiled kernels share

Every op takes `backend=` ("reference", "cpu", "triton" or "auto"; None: auto). There is no
process-wide default: each caller passes its choice. Triton and numba are imported lazily, so a
machine without them still works.
"""

from pgf_kernels.backends import (
    BACKENDS,
    cpu_unavailable_reason,
    resolve_backend,
    triton_unavailable_reason,
    unavailable_reason,
)
from pgf_kernels.conv import causal_conv1d, causal_conv1d_ref
from pgf_kernels.scan import (
    ScanResidual,
    selective_scan,
    selective_scan_ref,
    selective_scan_saving,
    selective_scan_vjp,
)
from pgf_kernels.ssd import SsdResidual, ssd_scan, ssd_scan_ref, ssd_scan_saving, ssd_scan_vjp

__all__ = [
    "BACKENDS",
    "causal_conv1d",
    "causal_conv1d_ref",
    "cpu_unavailable_reason",
    "resolve_backend",
    "ScanResidual",
    "selective_scan",
    "selective_scan_saving",
    "selective_scan_vjp",
    "selective_scan_ref",
    "SsdResidual",
    "ssd_scan",
    "ssd_scan_ref",
    "ssd_scan_saving",
    "ssd_scan_vjp",
    "triton_unavailable_reason",
    "unavailable_reason",
]
