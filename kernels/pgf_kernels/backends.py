"""Backend names, which backend runs where (`resolve_backend`), and why one cannot run.

A concrete backend is "reference" (pure PyTorch, any device), "cpu" (the compiled numba
kernels: CPU tensors) or "triton" (the Triton kernels: CUDA tensors, or CPU tensors in Triton's
interpreter); "auto" names the rule that picks one of them (`resolve_backend`). Every op takes
`backend=`; None means "auto". There is no process-wide default: callers (the engines, from the
CLI's --kernels) pass their choice to each op.
"""

from __future__ import annotations

import os

import torch

BACKENDS = ("reference", "triton", "auto", "cpu")  # "cpu" last: messages keep their old prefix
CONCRETE = ("reference", "cpu", "triton")


def check_name(name: str) -> str:
    """`name` when it is one of BACKENDS; else a ValueError naming the choices."""
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def requested(backend: str | None) -> str:
    """The backend an op was asked for: `backend`, or "auto" (the rule of `resolve_backend`) when
    it is None; a ValueError for an unknown name."""
    return "auto" if backend is None else check_name(backend)


# ----------------------------------------------------------------------------------------------
# availability (each imported lazily, so that a machine without Triton or numba still works)


def _triton_module():
    """The shared Triton helpers (pgf_kernels.triton_common), or None when Triton cannot be imported."""
    try:
        from pgf_kernels import triton_common
    except ImportError:
        return None
    return triton_common


def _cpu_module():
    """The shared numba helpers (pgf_kernels.cpu_common), or None when numba cannot be imported."""
    try:
        from pgf_kernels import cpu_common
    except ImportError:
        return None
    return cpu_common if cpu_common.available() else None


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


def unavailable_reason(name: str, device: torch.device) -> str | None:
    """Why backend `name` cannot run on tensors on `device` (None when it can; "reference" and
    "auto" always can)."""
    reason = {"cpu": cpu_unavailable_reason, "triton": triton_unavailable_reason}.get(check_name(name))
    return reason(device) if reason is not None else None


# ----------------------------------------------------------------------------------------------
# the rule


def resolve_backend(name: str, device: torch.device, parameter_grads: bool = False) -> str:
    """The concrete backend ("reference", "cpu" or "triton") that backend `name` means for
    tensors on `device`; `parameter_grads`: a gradient for the op's parameters is wanted
    (training).

    "auto": "triton" for CUDA tensors when Triton is importable, "cpu" for CPU tensors when
    numba is, "reference" otherwise, and always "reference" with parameter_grads (training keeps
    the reference, so its runs stay reproducible). A forced "cpu" or "triton" is returned as is,
    or a RuntimeError says why it cannot run on `device`."""
    name = check_name(name)
    if name == "reference":
        return name
    if name == "auto":
        if device.type == "cuda" and _triton_module() is not None and not parameter_grads:
            return "triton"
        if device.type == "cpu" and _cpu_module() is not None and not parameter_grads:
            return "cpu"
        return "reference"
    reason = unavailable_reason(name, device)
    if reason is not None:
        raise RuntimeError(f"kernel backend {name!r} cannot run here: {reason}")
    return name
