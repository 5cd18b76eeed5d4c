"""Track writers (HDF5, bedGraph, bigWig), chosen by output suffix or --format.

Every writer writes into a temporary file and renames it on `commit()`;
used as a context manager it commits on success and removes the temporary
file on any error, so no half-written output is ever left. `write_bedgraph`
and `write_bigwig` write sorted tracks given chunk by chunk (bounded memory;
`pgf attribute` converts its partial output with them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import pyBigWig

from pgf.errors import OutputError
from pgf.io.atomic import AtomicOutput, CommitOrAbort
from pgf.io.regions import Region, find_overlap
from pgf.io.tracks import AttributionTrack, RunMetadata, region_group_name, stream_value_runs, write_track_group

SUFFIX_FORMATS = {
    ".h5": "h5",
    ".hdf5": "h5",
    ".bedgraph": "bedgraph",
    ".bg": "bedgraph",
    ".bw": "bigwig",
    ".bigwig": "bigwig",
}
FORMATS = ("h5", "bedgraph", "bigwig")


def resolve_format(path: str | Path, fmt: str | None = None) -> str:
    """The output format: `fmt` when given, else from the file suffix."""
    if fmt is not None:
        key = fmt.lower()
        if key not in FORMATS:
            raise OutputError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
        return key
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        raise OutputError(
            f"cannot tell the output format from {str(path)!r}; use a suffix "
            f"({', '.join(SUFFIX_FORMATS)}) or --format {'|'.join(FORMATS)}"
        )
    return SUFFIX_FORMATS[suffix]


def hdf5_group_name(track: AttributionTrack) -> str:
    """The HDF5 group of a region: its 1-based coordinates, e.g. `chr1:1000001-1131072`."""
    return _group_name(track.region)


_group_name = region_group_name


def check_regions_fit_format(regions: Iterable[Region], fmt: str, overlap: str = "error") -> None:
    """The one check that `regions` fit one output of `fmt`, else an `OutputError`.

    HDF5 holds each region once (one group per region); bedGraph and bigWig
    hold one value per base, so their regions may overlap only when an `overlap`
    rule other than "error" combines them (pgf.io.overlaps). Workflows call
    it before computing anything; the writers call it again on what they got.
    """
    if fmt == "h5":
        seen = set()
        for region in regions:
            key = _group_name(region)
            if key in seen:
                raise OutputError(f"region {region} is given twice")
            seen.add(key)
        return
    if overlap != "error":
        return
    pair = find_overlap(regions)
    if pair:
        raise OutputError(
            f"regions {pair[0]} and {pair[1]} overlap; a {fmt} track holds one value per base "
            "(combine them with --overlap mean|max|first, or write .h5)"
        )


class TrackLabel(NamedTuple):
    """The name and description on a bedGraph track line (bigWig files carry none)."""

    name: str
    description: str


class TrackWriter(CommitOrAbort, ABC):
    """Collects per-region tracks and writes one output file atomically."""

    def __init__(
        self,
        path: str | Path,
        metadata: RunMetadata,
        chrom_sizes: Mapping[str, int],
        force: bool = False,
        label: TrackLabel | None = None,
    ):
        self.metadata = metadata
        self.chrom_sizes = dict(chrom_sizes)
        self.label = label or TrackLabel(
            f"pgf {metadata.method}",
            f"pgf {metadata.tool_version} {metadata.method} of {metadata.target}, model {metadata.model_id}",
        )
        self.output = AtomicOutput(path, force=force)
        self.target = self.output.path

    @abstractmethod
    def add(self, track: AttributionTrack) -> None:
        """Add one region's track."""

    def _finish(self) -> None:
        """Write whatever was buffered into the temporary file and close it."""

    def _close_quietly(self) -> None:
        """Release open handles after a failure."""

    def commit(self) -> None:
        self._finish()
        self.output.commit()

    def abort(self) -> None:
        try:
            self._close_quietly()
        finally:
            self.output.abort()



class HDF5Writer(TrackWriter):
    """One group per region, named by its 1-based coordinates; see the README for the layout."""

    def __init__(self, path, metadata, chrom_sizes, force=False, label=None):
        super().__init__(path, metadata, chrom_sizes, force, label)
        self._regions: list[Region] = []
        try:
            self._file = h5py.File(self.output.temp_path, "w")
        except OSError as exc:
            self.output.abort()
            raise OutputError(f"cannot create HDF5 file for {self.output.path}: {exc}") from None
        for key, value in metadata.attributes().items():
            self._file.attrs[key] = value

    def add(self, track: AttributionTrack) -> None:
        name = hdf5_group_name(track)
        self._regions.append(track.region)
        if name in self._file:  # the group exists: the one region check says why
            check_regions_fit_format(self._regions, "h5")
        write_track_group(self._file, track, self.metadata.attributes())

    def _finish(self) -> None:
        self._file.close()

    def _close_quietly(self) -> None:
        try:
            self._file.close()
        except Exception:
            pass


class _IntervalWriter(TrackWriter):
    """Buffers per-region scores and writes them sorted by FASTA order and position."""

    def __init__(self, path, metadata, chrom_sizes, force=False, label=None):
        super().__init__(path, metadata, chrom_sizes, force, label)
        self._tracks: list[tuple[str, int, np.ndarray]] = []
        self._regions = []

    def add(self, track: AttributionTrack) -> None:
        self.add_values(track.region, track.score)

    def add_values(self, region: Region, values: np.ndarray) -> None:
        """One value per base of `region` (NaN: no value)."""
        self._regions.append(region)
        self._tracks.append((region.chrom, region.start, np.asarray(values, dtype=np.float32)))

    def sorted_tracks(self) -> list[tuple[str, int, np.ndarray]]:
        """Tracks in FASTA order then position; overlapping regions are an `OutputError`."""
        check_regions_fit_format(self._regions, self.format)
        order = {chrom: index for index, chrom in enumerate(self.chrom_sizes)}
        return sorted(self._tracks, key=lambda item: (order[item[0]], item[1]))

    format = "interval"  # the key of `WRITERS`


class BedGraphWriter(_IntervalWriter):
    """`track type=bedGraph` line, then `chrom start end value` (0-based half-open), sorted;
    equal neighbouring values are merged; masked (NaN) positions are omitted."""

    format = "bedgraph"

    def _finish(self) -> None:
        items = ((chrom, offset, [score]) for chrom, offset, score in self.sorted_tracks())
        write_bedgraph(self.output.temp_path, self.label, items)


class BigWigWriter(_IntervalWriter):
    """bigWig through pyBigWig; the header lists every sequence of the FASTA index."""

    format = "bigwig"

    def _finish(self) -> None:
        items = ((chrom, offset, [score]) for chrom, offset, score in self.sorted_tracks())
        write_bigwig(self.output.temp_path, self.chrom_sizes, items, shown_as=self.output.path)


IntervalItems = Iterable[tuple[str, int, Iterable[np.ndarray]]]  # (chrom, 0-based start, chunks of scores)


def write_bedgraph(path: str | Path, label: TrackLabel, items: IntervalItems, comments: Iterable[str] = ()) -> None:
    """A bedGraph file of `items` (sorted, non-overlapping), runs of equal values merged.

    `comments` become `#` lines after the track line (provenance).
    """
    with open(path, "w") as handle:
        handle.write(f'track type=bedGraph name="{label.name}" description="{label.description}"\n')
        handle.writelines(f"# {line}\n" for line in comments)
        for chrom, offset, chunks in items:
            for starts, ends, values in stream_value_runs(chunks):
                handle.writelines(
                    f"{chrom}\t{offset + s}\t{offset + e}\t{v:.9g}\n"
                    for s, e, v in zip(starts.tolist(), ends.tolist(), values.tolist())
                )


def write_bigwig(path: str | Path, chrom_sizes: Mapping[str, int], items: IntervalItems, shown_as: str | Path | None = None) -> None:
    """A bigWig file of `items` (sorted, non-overlapping) with every sequence of `chrom_sizes` in its header."""
    handle = pyBigWig.open(str(path), "w")
    if handle is None:
        raise OutputError(f"pyBigWig cannot create {shown_as or path}")
    try:
        handle.addHeader(list(chrom_sizes.items()))
        for chrom, offset, chunks in items:
            for starts, ends, values in stream_value_runs(chunks):
                if starts.size:
                    handle.addEntries(
                        [chrom] * starts.size,
                        (starts + offset).tolist(),
                        ends=(ends + offset).tolist(),
                        values=values.astype(np.float64).tolist(),
                    )
    finally:
        handle.close()


WRITERS: dict[str, type[TrackWriter]] = {"h5": HDF5Writer, "bedgraph": BedGraphWriter, "bigwig": BigWigWriter}


def open_writer(
    path: str | Path,
    fmt: str,
    metadata: RunMetadata,
    chrom_sizes: Mapping[str, int],
    force: bool = False,
    label: TrackLabel | None = None,
) -> TrackWriter:
    """A writer for `fmt` whose temporary output already exists (so bad paths fail early).

    `label` names a bedGraph track (default: the method, target and model of `metadata`).
    """
    return WRITERS[fmt](path, metadata, chrom_sizes, force=force, label=label)
