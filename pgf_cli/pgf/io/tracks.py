"""What a track writer receives: one attribution track per region, plus run metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from pgf.io.regions import Region


@dataclass(frozen=True)
class RunMetadata:
    """Facts about the run, stored with every output (HDF5 attributes, track lines)."""

    method: str
    target: str
    model_id: str
    model_checksum: str
    model_trained: bool
    engine: str
    dtype: str
    tool_version: str

    def attributes(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class AttributionTrack:
    """Per-base results for one region (arrays have the region's length L)."""

    region: Region
    onehot: np.ndarray  # (L, 4) uint8, columns A C G T
    gradient: np.ndarray  # (L, 4) float32, d target / d onehot
    score: np.ndarray  # (L,) float32, NaN where no base was observed
    target_value: float
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    extra_attributes: dict[str, dict[str, object]] = field(default_factory=dict)


def value_runs(score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal, non-NaN values: (starts, ends, values), offsets within the track.

    Both interval writers (bedGraph, bigWig) use these runs, so they hold the
    same numbers; NaN (masked) positions are left out.
    """
    values = np.asarray(score, dtype=np.float32)
    if values.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    valid = ~np.isnan(values)
    # a run breaks where validity changes or the value changes
    change = np.ones(values.size, dtype=bool)
    change[1:] = (valid[1:] != valid[:-1]) | (values[1:] != values[:-1])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], values.size)
    keep = valid[starts]
    return starts[keep].astype(np.int64), ends[keep].astype(np.int64), values[starts[keep]]
