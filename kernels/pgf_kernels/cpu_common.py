"""What the compiled CPU kernels (numba) of every op share: the import guard, the fastmath flags,
the work dtype, output buffers and the cache-tolerant call.

Kernels are compiled on first use and cached on disk (numba `cache=True`, in the __pycache__
folder beside each kernel's file).
"""

from __future__ import annotations

import torch

try:  # numba is a dependency; the import guard only lets the ops fall back when it is broken
    import numba

    from pgf_kernels.cpu_exp import fast_exp  # noqa: F401 - a broken llvmlite counts as unavailable
except ImportError as error:  # pragma: no cover - exercised only without numba
    numba = None
    _IMPORT_ERROR: Exception | None = error
else:
    _IMPORT_ERROR = None

# Tests set this so every output and scratch buffer starts as NaN: a forgotten write fails.
NAN_FILL = False

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}  # no nnan/ninf: NaN and inf propagate


def available() -> bool:
    return numba is not None


def unavailable_reason() -> str | None:
    if numba is None:
        return f"numba cannot be imported ({_IMPORT_ERROR}); pip install numba"
    return None


def work_dtype(x: torch.Tensor) -> torch.dtype:
    """fp64 for fp64 inputs, fp32 otherwise (as the reference promotes)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def alloc(shape, dtype) -> torch.Tensor:
    """An output or scratch buffer; NaN-filled when the tests ask (NAN_FILL), so a missed write fails."""
    if NAN_FILL:
        return torch.full(shape, float("nan"), dtype=dtype)
    return torch.empty(shape, dtype=dtype)


def run_compiled(kernel, *args) -> None:
    """Call a numba kernel; when its on-disk cache cannot be written (a full disk, a read-only
    cache folder) the kernel, already compiled in memory by then, runs without the cache."""
    try:
        kernel(*args)
    except OSError:
        kernel._cache.disable()  # numba's per-function disk cache; compiling never needs it
        kernel(*args)
