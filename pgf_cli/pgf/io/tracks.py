"""What a track writer receives: one attribution track per region, plus run metadata."""

from __future__ import annotations

import hashlib

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field

import h5py
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
    model_revision: str = ""  # the Hub commit the weights came from ("" for a local model)

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


def stream_value_runs(chunks: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`value_runs` of the concatenation of `chunks`, computed chunk by chunk.

    Yields (starts, ends, values) arrays (offsets within the whole track); a
    run that crosses a chunk boundary is yielded once, whole, so the result
    equals `value_runs` of the concatenated array (bounded memory for long tracks).
    """
    offset = 0
    pending: tuple[int, int, np.float32] | None = None  # a run touching the end of the previous chunk
    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.float32)
        starts, ends, values = value_runs(chunk)
        starts, ends = starts + offset, ends + offset
        if pending is not None:
            if starts.size and starts[0] == pending[1] and values[0] == pending[2]:
                starts[0] = pending[0]
            else:
                yield (np.array([pending[0]], np.int64), np.array([pending[1]], np.int64), np.array([pending[2]], np.float32))
            pending = None
        offset += chunk.size
        if starts.size and ends[-1] == offset:
            pending = (int(starts[-1]), int(ends[-1]), values[-1])
            starts, ends, values = starts[:-1], ends[:-1], values[:-1]
        if starts.size:
            yield starts, ends, values
    if pending is not None:
        yield (np.array([pending[0]], np.int64), np.array([pending[1]], np.int64), np.array([pending[2]], np.float32))


def region_group_name(region: Region) -> str:
    """The HDF5 group of a region: its 1-based coordinates, e.g. `chr1:1000001-1131072`."""
    return region.to_string().replace("/", "%2F")


def dataset_options(length: int) -> dict[str, object]:
    """Compression of every per-base dataset (none for empty regions)."""
    return {"compression": "gzip", "compression_opts": 4, "shuffle": True} if length > 0 else {}


def bases_sha256(onehot_chunks: Iterable[np.ndarray]) -> str:
    """sha256 of a region's one-hot bases (uint8 rows, given in consecutive chunks): what `--resume`
    compares to know that a stored region was computed on the bases the FASTA has now."""
    digest = hashlib.sha256()
    for chunk in onehot_chunks:
        digest.update(np.ascontiguousarray(chunk, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def write_track_group(handle: h5py.File, track: AttributionTrack, attributes: Mapping[str, object]) -> h5py.Group:
    """One region's group in the layout of the README's "Outputs" (HDF5)."""
    region = track.region
    group = handle.create_group(region_group_name(region))
    group.attrs["chrom"] = region.chrom
    group.attrs["start"] = region.start
    group.attrs["end"] = region.end
    if region.name is not None:
        group.attrs["name"] = region.name
    group.attrs["target_value"] = track.target_value
    group.attrs["bases_sha256"] = bases_sha256([track.onehot])
    for key, value in attributes.items():
        group.attrs[key] = value
    options = dataset_options(len(region))
    group.create_dataset("gradient", data=np.asarray(track.gradient, dtype=np.float32), **options)
    group.create_dataset("score", data=np.asarray(track.score, dtype=np.float32), **options)
    group.create_dataset("onehot", data=np.asarray(track.onehot, dtype=np.uint8), **options)
    for key, values in track.extras.items():
        dataset = group.create_dataset(key, data=values, **options)
        for attr, value in track.extra_attributes.get(key, {}).items():
            dataset.attrs[attr] = value
    return group
