"""The `pgf plot` figure: the attribution track over a region, overlays, and sequence logos (logomaker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pgf.errors import OutputError
from pgf.io.atomic import AtomicOutput
from pgf.io.regions import Region
from pgf.viz.attribution import RegionScores
from pgf.viz.extras import plotting
from pgf.viz.overlays import EffectTrack

FIGURE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
BASES = list("ACGT")
MAX_LABELS = 12  # BED element names written on the track when at most this many overlap


def figure_format(path: str | Path) -> str:
    """png, svg or pdf from the output's suffix, else an `OutputError`."""
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise OutputError(f"cannot tell the figure format from {str(path)!r}; use a .png, .svg or .pdf suffix")
    return FIGURE_FORMATS[suffix]


def logo_matrix(scores: RegionScores, hypothetical: bool = False) -> Any:
    """The logo's (positions x A C G T) matrix: the score at the observed base, or the hypothetical scores."""
    import pandas  # a dependency of logomaker

    if hypothetical:
        values = np.asarray(scores.hypothetical, dtype=np.float64)
    else:
        values = scores.onehot.astype(np.float64) * np.asarray(scores.score, dtype=np.float64)[:, None]
    index = pandas.Index(np.arange(scores.region.start, scores.region.end) + 1, name="position")
    return pandas.DataFrame(np.nan_to_num(values), index=index, columns=BASES)


def _track(ax: Any, scores: RegionScores, windows: list[Region], elements: list[Region]) -> None:
    region = scores.region
    x = np.arange(region.start, region.end) + 1
    ax.plot(x, scores.score, lw=0.6, color="black")  # NaN (masked) bases break the line: gaps
    ax.axhline(0, lw=0.4, color="grey")
    for e in elements:
        ax.axvspan(max(e.start, region.start) + 1, min(e.end, region.end), color="tab:green", alpha=0.2, lw=0)
        if len(elements) <= MAX_LABELS and e.name:
            ax.text((max(e.start, region.start) + min(e.end, region.end)) / 2, 1.0, e.name, transform=ax.get_xaxis_transform(),
                    fontsize=6, ha="center", va="bottom", rotation=20, color="tab:green")
    for k, w in enumerate(windows, start=1):
        ax.axvspan(w.start + 1, w.end, color="tab:orange", alpha=0.5, lw=0)
        ax.text((w.start + w.end) / 2, 0.02, str(k), transform=ax.get_xaxis_transform(), fontsize=7, ha="center", color="tab:orange")
    ax.set_xlim(region.start + 1, region.end)
    ax.set_ylabel("score")
    ax.ticklabel_format(axis="x", style="plain", useOffset=False)


def _effect(ax: Any, effect: EffectTrack, region: Region) -> None:
    lo, hi = max(region.start, effect.region.start), min(region.end, effect.region.end)
    if hi > lo:
        part = effect.values[lo - effect.region.start : hi - effect.region.start]
        ax.plot(np.arange(lo, hi) + 1, part, lw=0.6, color="tab:blue")
    ax.axvline(effect.position + 1, color="tab:red", lw=0.8)
    ax.set_xlim(region.start + 1, region.end)
    ax.set_ylabel("effect")
    ax.set_title(f"{effect.name}: {effect.label}", fontsize=8, loc="left")
    ax.ticklabel_format(axis="x", style="plain", useOffset=False)


def _logo(logomaker: Any, ax: Any, matrix: Any, title: str, gid: str | None) -> Any:
    logo = logomaker.Logo(matrix, ax=ax, color_scheme="classic", font_name="DejaVu Sans")
    ax.axhline(0, lw=0.4, color="grey")
    ax.set_title(title, fontsize=8, loc="left")
    ax.set_xticks(matrix.index[:: max(1, len(matrix) // 5)])
    ax.tick_params(labelsize=7)
    ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    if gid is not None:  # name the drawn letter of each position, so an SVG can be read back
        for position, row in logo.glyph_df.iterrows():
            tallest = max(row, key=lambda g: abs(g.ceiling - g.floor))
            if tallest.ceiling != tallest.floor:
                tallest.patch.set_gid(f"{gid}-{position}-{tallest.c}")
    return logo


def draw(scores: RegionScores, windows: list[Region], elements: list[Region], effect: EffectTrack | None,
         title: str) -> tuple[Any, list[Any]]:
    """(matplotlib Figure, its logomaker Logos): the track, then one row of logos per window."""
    pyplot, logomaker = plotting()
    hyp = scores.hypothetical is not None
    heights = [2.0] + ([1.2] if effect else []) + [1.5] * len(windows)
    figure = pyplot.figure(figsize=(11, sum(heights) + 0.6), layout="constrained")
    grid = figure.add_gridspec(len(heights), 2 if hyp else 1, height_ratios=heights)
    track = figure.add_subplot(grid[0, :])
    _track(track, scores, windows, elements)
    track.set_title(title, fontsize=9, loc="left", pad=24 if elements else 6)
    row = 1
    if effect is not None:
        _effect(figure.add_subplot(grid[1, :], sharex=track), effect, scores.region)
        row = 2
    logos = []
    for k, window in enumerate(windows):
        part = scores.crop(window)
        label = f"{k + 1}: {window.to_string(commas=True)}"
        logos.append(_logo(logomaker, figure.add_subplot(grid[row + k, 0]), logo_matrix(part), f"{label}, score at the observed base",
                           f"pgf-logo{k + 1}"))
        if hyp:
            logos.append(_logo(logomaker, figure.add_subplot(grid[row + k, 1]), logo_matrix(part, hypothetical=True),
                               f"{label}, hypothetical scores", None))
    return figure, logos


def save(figure: Any, path: str | Path, force: bool) -> None:
    """Write the figure atomically in the format its suffix names."""
    fmt = figure_format(path)
    output = AtomicOutput(path, force=force)
    try:
        figure.savefig(output.temp_path, format=fmt, dpi=110, metadata={"Date": None} if fmt == "svg" else None)
        output.commit()
    finally:
        output.abort()
        from matplotlib import pyplot

        pyplot.close(figure)
