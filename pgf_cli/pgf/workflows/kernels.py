"""Which kernels a command's engine runs (`--kernels`), checked against the device before any work."""

from __future__ import annotations

import torch

from pgf.errors import PgfUserError
from pgf_kernels import BACKENDS, cpu_unavailable_reason, triton_unavailable_reason

# "auto": the fused Triton kernels on CUDA (their test suite passes compiled on an H200, and
# they are several times faster than the reference there: bench/results/nvidia-h200-*), the
# compiled numba kernels on CPU (bench/results/cpu-2core-throughput.json), the PyTorch
# reference whenever parameter gradients are wanted (training).
DEFAULT_KERNELS = "auto"
KERNELS_HELP = (
    "Selective-scan kernels: 'auto' (the default: fused Triton kernels on CUDA, compiled numba kernels on CPU), "
    "'reference' (PyTorch, any device), 'triton' (Triton, CUDA only) or 'cpu' (numba, CPU tensors)."
)


def checked_kernels(name: str, device: torch.device) -> str:
    """`name`, the kernels an engine on `device` is given; a user error when they cannot run there."""
    if name not in BACKENDS:
        raise PgfUserError(f"unknown kernels {name!r}; choose one of: {', '.join(BACKENDS)}")
    unavailable = {"triton": triton_unavailable_reason, "cpu": cpu_unavailable_reason}.get(name)
    reason = unavailable(device) if unavailable else None
    if reason is not None:
        raise PgfUserError(f"--kernels {name}: {reason}")
    return name
