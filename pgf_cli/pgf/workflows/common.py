"""What the workflows share: dtypes, devices, the reporter they talk to, memory, model loading."""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from typing import Protocol

import torch

from pgf.engine import Progress
from pgf.errors import PgfUserError
from pgf.io.regions import Region
from pgf.models.registry import LoadedModel, load_model

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class RegionSummary:
    """How one region went: time, memory and its target value (shown by the CLI)."""

    region: Region
    seconds: float
    peak_memory_bytes: int
    memory_kind: str  # "peak RSS" (process, CPU) or "peak CUDA" (this region)
    target_value: float  # NaN with --window (one target per window; see window_target_value)
    masked_bases: int
    batch: int = 1  # regions computed together (seconds and memory are the batch's)


class Reporter(Protocol):
    """How a workflow talks to its user interface (the CLI draws progress bars)."""

    def warn(self, message: str) -> None: ...

    def info(self, message: str) -> None: ...

    def region_started(self, regions: list[Region], index: int, count: int) -> Progress: ...

    def region_finished(self, summary: RegionSummary) -> None: ...


class SilentReporter:
    """A reporter that says nothing (library use, tests)."""

    def warn(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def region_started(self, regions: list[Region], index: int, count: int) -> Progress:
        return lambda done, total: None

    def region_finished(self, summary: RegionSummary) -> None:
        pass


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when available; asking for CUDA without it is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PgfUserError("--device cuda was requested but no CUDA device is available (is a CUDA build of torch installed?)")
    if name not in ("cpu", "cuda"):
        raise PgfUserError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    """The torch dtype named by --dtype; an unknown name is a user error."""
    if name not in DTYPES:
        raise PgfUserError(f"unknown dtype {name!r}; choose one of: {', '.join(DTYPES)}")
    return DTYPES[name]


def peak_memory(device: torch.device) -> tuple[int, str]:
    """Peak memory in bytes and what it measures (CUDA allocations, or the process RSS)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "peak CUDA"
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, "peak RSS"


def load_model_for_user(spec: str, device: torch.device, dtype: torch.dtype, vocab: str | None, reporter: Reporter) -> LoadedModel:
    """Load the model and tell the user what it is not: untrained (a warning) or a demonstration (a note)."""
    loaded = load_model(spec, device=device, dtype=dtype, vocab=vocab)
    if not loaded.info.trained:
        reporter.warn(f"model {loaded.info.model_id!r} is a {loaded.info.note}")
    elif loaded.info.note:  # e.g. the built-in model: trained on simulated DNA only
        reporter.info(f"model {loaded.info.model_id!r}: {loaded.info.note}")
    return loaded
