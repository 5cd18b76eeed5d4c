"""How elements stand out of a region's scores, and where its strongest windows are."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pgf.io.regions import Region


@dataclass(frozen=True)
class ElementRank:
    """One BED element against its region's |score|: best base rank, bases in the top 1%, best/median."""

    name: str
    best_rank: int
    bases: int  # scored bases in the region
    in_top_percent: int
    best_over_median: float  # inf when the median is 0

    def line(self) -> str:
        ratio = f"{self.best_over_median:,.0f}x the median base" if np.isfinite(self.best_over_median) else "median base is 0"
        return (f"{self.name}: best base ranks {self.best_rank:,} of {self.bases:,}; "
                f"{self.in_top_percent} of its bases in the top 1%; best base {ratio}")


def ranks(score: np.ndarray) -> np.ndarray:
    """1-based rank of every base by |score|, largest first (masked NaN bases rank last)."""
    magnitude = np.nan_to_num(np.abs(score), nan=-1.0)
    order = np.argsort(-magnitude, kind="stable")
    rank = np.empty(len(score), dtype=np.int64)
    rank[order] = np.arange(1, len(score) + 1)
    return rank


def element_ranks(score: np.ndarray, region: Region, elements: list[Region]) -> list[ElementRank]:
    """An `ElementRank` for every element overlapping `region` (scores of `region`, one per base)."""
    rank = ranks(score)
    valid = ~np.isnan(score)
    scored = int(valid.sum())
    top = max(1, scored // 100)
    median = float(np.median(np.abs(score[valid]))) if scored else 0.0
    out = []
    for e in elements:
        lo, hi = max(e.start, region.start) - region.start, min(e.end, region.end) - region.start
        if e.chrom != region.chrom or hi <= lo or not valid[lo:hi].any():
            continue
        best = float(np.nanmax(np.abs(score[lo:hi])))
        out.append(ElementRank(e.name or e.to_string(), int(rank[lo:hi].min()), scored, int((rank[lo:hi] <= top).sum()),
                               best / median if median > 0 else float("inf")))
    return out


def strongest_windows(score: np.ndarray, region: Region, width: int, count: int) -> list[Region]:
    """The `count` non-overlapping windows of `width` bp with the largest sum of |score|, strongest first."""
    width = min(width, len(score))
    magnitude = np.nan_to_num(np.abs(score.astype(np.float64)))
    sums = np.convolve(magnitude, np.ones(width), mode="valid")
    windows: list[Region] = []
    for start in np.argsort(-sums, kind="stable"):
        if len(windows) == count:
            break
        if all(abs(int(start) - (w.start - region.start)) >= width for w in windows):
            windows.append(Region(region.chrom, region.start + int(start), region.start + int(start) + width))
    return windows
