"""Which selective-scan kernels a command runs (`--kernels`)."""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

from pgf.errors import PgfUserError
from pgf_kernels import BACKENDS, kernel_backend, triton_unavailable_reason

# The Triton kernels pass their tests in Triton's CPU interpreter but have not yet been
# compiled and run on a GPU, so the reference stays the default until the CUDA suite passes.
DEFAULT_KERNELS = "reference"
KERNELS_HELP = (
    "Selective-scan kernels: 'reference' (PyTorch, any device; the default), 'triton' (fused Triton kernels, "
    "CUDA only; not yet validated on a GPU) or 'auto' (Triton on CUDA, the reference elsewhere)."
)


def use_kernels(name: str, device: torch.device) -> AbstractContextManager:
    """A context in which every scan runs the `name` kernels; a user error when they cannot run on `device`."""
    if name not in BACKENDS:
        raise PgfUserError(f"unknown kernels {name!r}; choose one of: {', '.join(BACKENDS)}")
    if name == "triton":
        reason = triton_unavailable_reason(device)
        if reason is not None:
            raise PgfUserError(f"--kernels triton: {reason}")
    return kernel_backend(name)
