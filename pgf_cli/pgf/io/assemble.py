"""Final outputs assembled from HDF5 region groups spread over several files.

`pgf attribute` assembles its batch files (`OUT.partial/batch-*.h5`) and `pgf
merge` the outputs of shards. HDF5 groups are copied as stored (compressed
chunks, attributes); bedGraph and bigWig read each region's `score` in chunks,
so memory does not grow with a region's length. The output appears atomically.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pgf.errors import OutputError
from pgf.io.atomic import AtomicOutput, write_failure
from pgf.io.overlaps import DEFAULT_OVERLAP, TrackSource, one_value_per_base
from pgf.io.partial import as_attribute
from pgf.io.regions import Region
from pgf.io.writers import TrackLabel, check_regions_fit_format, write_bedgraph, write_bigwig

READ_CHUNK = 1 << 16  # positions of `score` read (and intervals converted) at a time


@dataclass(frozen=True)
class StoredRegion:
    """One region group in one HDF5 file."""

    path: Path
    group: str
    region: Region


def stored_regions(paths: list[Path]) -> list[StoredRegion]:
    """Every region group of `paths`, in file order then name order."""
    found = []
    for path in paths:
        try:
            handle = h5py.File(path, "r")
        except OSError as exc:
            raise OutputError(f"cannot read {path} as HDF5: {exc}") from None
        with handle:
            for name, group in handle.items():
                if not isinstance(group, h5py.Group) or "score" not in group:
                    continue
                attrs = group.attrs
                name_attr = attrs.get("name")
                region = Region(str(attrs["chrom"]), int(attrs["start"]), int(attrs["end"]), str(name_attr) if name_attr is not None else None)
                found.append(StoredRegion(Path(path), name, region))
    return found


def check_no_collisions(stored: list[StoredRegion], fmt: str, overlap: str = "error") -> None:
    """A region in two files is an `OutputError`; so are overlaps for bedGraph/bigWig with `overlap` "error"."""
    seen: dict[str, Path] = {}
    for item in stored:
        if item.group in seen:
            raise OutputError(f"region {item.group} is in both {seen[item.group]} and {item.path}")
        seen[item.group] = item.path
    check_regions_fit_format([item.region for item in stored], fmt, overlap)


def check_free_space(output: Path, stored: list[StoredRegion]) -> None:
    """An `OutputError` when the output's disk has less free space than the stored groups take (they are
    copied as stored): HDF5 writing to a full disk is left in a state that crashes the process, so
    this is checked before, and the partial output stays for a --resume elsewhere."""
    needed = sum(path.stat().st_size for path in {item.path for item in stored})
    free = shutil.disk_usage(Path(output).resolve().parent).free
    if needed * 1.05 + (1 << 20) > free:
        raise OutputError(f"cannot write {output}: No space left on device (it needs about {needed / 1e6:,.1f} MB, "
                          f"{free / 1e6:,.1f} MB are free)")


def write_hdf5(output: Path, stored: list[StoredRegion], root: Mapping[str, object], force: bool) -> None:
    """Copy every region group into a new HDF5 file with root attributes `root`."""
    check_free_space(output, stored)
    atomic = AtomicOutput(output, force=force)
    try:
        with h5py.File(atomic.temp_path, "w") as target:
            for key, value in root.items():
                target.attrs[key] = as_attribute(value)
            by_file: dict[Path, list[str]] = {}
            for item in stored:
                by_file.setdefault(item.path, []).append(item.group)
            for path, names in by_file.items():
                with h5py.File(path, "r") as source:
                    for name in names:
                        copy_group(source[name], target, name)
        atomic.commit()
    except BaseException as exc:
        atomic.abort()
        error = write_failure(exc, output)
        if error is not None:
            raise error from None
        raise


def copy_group(source: h5py.Group, target: h5py.Group, name: str) -> None:
    """Copy a region group: attributes as they are, chunked datasets chunk by chunk as stored
    (still compressed, so memory stays at one chunk however long the region), others whole."""
    group = target.create_group(name)
    for key, value in source.attrs.items():
        group.attrs[key] = value
    for key, dataset in source.items():
        if dataset.chunks is None:
            copy = group.create_dataset(key, data=dataset[()])
        else:
            copy = group.create_dataset(
                key, shape=dataset.shape, dtype=dataset.dtype, chunks=dataset.chunks,
                compression=dataset.compression, compression_opts=dataset.compression_opts, shuffle=dataset.shuffle,
            )
            for index in range(dataset.id.get_num_chunks()):
                info = dataset.id.get_chunk_info(index)
                mask, data = dataset.id.read_direct_chunk(info.chunk_offset)
                copy.id.write_direct_chunk(info.chunk_offset, data, mask)
        for attr, value in dataset.attrs.items():
            copy.attrs[attr] = value


def _score_chunks(item: StoredRegion) -> Iterator[np.ndarray]:
    with h5py.File(item.path, "r") as source:
        score = source[item.group]["score"]
        for first in range(0, score.shape[0], READ_CHUNK):
            yield score[first : first + READ_CHUNK]


def _sorted(stored: list[StoredRegion], chrom_sizes: Mapping[str, int]) -> list[StoredRegion]:
    order = {chrom: index for index, chrom in enumerate(chrom_sizes)}
    return sorted(stored, key=lambda item: (order[item.region.chrom], item.region.start))


def write_intervals(
    output: Path,
    fmt: str,
    stored: list[StoredRegion],
    chrom_sizes: Mapping[str, int],
    label: TrackLabel,
    comments: list[str],
    force: bool,
    overlap: str = DEFAULT_OVERLAP,
) -> None:
    """bedGraph or bigWig of the `score` of every stored region (sorted by FASTA order, position);
    bases of overlapping regions get one value by the `overlap` rule (pgf.io.overlaps)."""
    check_regions_fit_format([item.region for item in stored], fmt, overlap)
    sources = [TrackSource(item.region, lambda item=item: _score_chunks(item)) for item in _sorted(stored, chrom_sizes)]
    items = one_value_per_base(sources, overlap)
    comments = [*comments, f"overlap: {overlap}"]
    atomic = AtomicOutput(output, force=force)
    try:
        if fmt == "bedgraph":
            write_bedgraph(atomic.temp_path, label, items, comments)
        else:
            write_bigwig(atomic.temp_path, chrom_sizes, items, shown_as=output)
        atomic.commit()
    except BaseException as exc:
        atomic.abort()
        error = write_failure(exc, output)
        if error is not None:
            raise error from None
        raise
