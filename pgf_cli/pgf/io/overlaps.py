"""One value per base from overlapping regions, for bedGraph and bigWig tracks (`--overlap`).

A track holds one value per base; regions of an HDF5 output may overlap, a track's may not.
Where they do, the regions that cover a base are combined by a stated rule:

    mean   the mean of their values (the default; what averaging tracks, e.g. deepTools', do)
    max    the largest value
    first  the value of the first region (lowest start; then the BED/file order)
    error  refuse (the regions must not overlap)

Bases without a value (NaN: masked) are left out of the combination. Regions that overlap
nothing stream through unchanged, so memory grows only with the span of a group of
overlapping regions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from pgf.errors import OutputError
from pgf.io.regions import Region

OVERLAP_RULES = ("mean", "max", "first", "error")
DEFAULT_OVERLAP = "mean"


def check_rule(rule: str) -> str:
    """`rule`, or an `OutputError` naming the rules."""
    if rule not in OVERLAP_RULES:
        raise OutputError(f"unknown overlap rule {rule!r}; choose one of: {', '.join(OVERLAP_RULES)}")
    return rule


@dataclass(frozen=True)
class TrackSource:
    """One region's values, read on demand as chunks (so a long region never sits in memory whole)."""

    region: Region
    chunks: Callable[[], Iterable[np.ndarray]]


def _groups(sources: list[TrackSource]) -> Iterator[list[TrackSource]]:
    """Maximal groups of sources sorted by position whose regions overlap one another transitively."""
    group: list[TrackSource] = []
    end = -1
    for source in sources:
        region = source.region
        if group and (region.chrom != group[0].region.chrom or region.start >= end):
            yield group
            group, end = [], -1
        group.append(source)
        end = max(end, region.end)
    if group:
        yield group


def _combined(group: list[TrackSource], rule: str) -> np.ndarray:
    start = group[0].region.start
    span = max(source.region.end for source in group) - start
    if rule == "mean":
        total, count = np.zeros(span), np.zeros(span)
    else:
        out = np.full(span, np.nan)
    for source in group:
        values = np.concatenate([np.asarray(c, dtype=np.float64) for c in source.chunks()] or [np.zeros(0)])
        at = slice(source.region.start - start, source.region.start - start + len(values))
        valid = ~np.isnan(values)
        if rule == "mean":
            total[at][valid] += values[valid]
            count[at][valid] += 1
        elif rule == "max":
            current = out[at]
            take = valid & (np.isnan(current) | (values > current))
            current[take] = values[take]
        else:  # first: a base keeps the value of the first region that gave it one
            current = out[at]
            take = valid & np.isnan(current)
            current[take] = values[take]
    if rule == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return (total / count).astype(np.float32)
    return out.astype(np.float32)


def one_value_per_base(sources: list[TrackSource], rule: str) -> Iterator[tuple[str, int, Iterable[np.ndarray]]]:
    """(chrom, start, chunks) covering every base of `sources` (sorted by chromosome and start) once,
    overlapping regions combined by `rule`; "error" raises an `OutputError` at the first overlap."""
    check_rule(rule)
    for group in _groups(sources):
        if len(group) == 1:
            yield group[0].region.chrom, group[0].region.start, group[0].chunks()
            continue
        if rule == "error":
            raise OutputError(f"regions {group[0].region} and {group[1].region} overlap; a track holds one value per "
                              "base: combine them with --overlap mean|max|first, or write .h5")
        yield group[0].region.chrom, group[0].region.start, [_combined(group, rule)]
