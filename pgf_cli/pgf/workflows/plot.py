"""`pgf plot`: an attribution file's track over a region, its strongest windows as sequence logos,
optional BED and `pgf effect` overlays, and how each BED element ranks (printed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pgf.errors import PgfUserError
from pgf.io.atomic import check_output_path
from pgf.io.regions import Region
from pgf.viz import figure
from pgf.viz.attribution import AttributionFile
from pgf.viz.overlays import overlapping, read_bed_elements, read_effect
from pgf.viz.ranking import ElementRank, element_ranks, strongest_windows
from pgf.workflows.common import Reporter, SilentReporter


@dataclass
class PlotRequest:
    """What `pgf plot` was asked for (paths and the command line's strings)."""

    h5: Path
    output: Path
    region: str | None = None  # CHROM:START-END or a region name; default: the file's only region
    windows: list[str] = field(default_factory=list)  # logo windows; default: the strongest
    logo_width: int = 20
    logos: int = 2
    bed: Path | None = None
    effect: Path | None = None
    effect_variant: str | None = None
    effect_channel: str | None = None
    force: bool = False


@dataclass
class PlotResult:
    region: Region
    windows: list[Region]
    ranks: list[ElementRank]  # one per BED element overlapping the region


def run_plot(request: PlotRequest, reporter: Reporter | None = None) -> PlotResult:
    """Draw and write the figure; return what it shows."""
    reporter = reporter or SilentReporter()
    figure.figure_format(request.output)
    check_output_path(request.output, request.force)
    with AttributionFile(request.h5) as h5:
        if request.region:
            file_region, shown = h5.find(request.region)
        else:
            file_region = shown = h5.only()
        scores = h5.load(file_region).crop(shown)
        method, target = h5.attrs.get("method", "?"), h5.attrs.get("target", "?")
        windows = []
        for spec in request.windows:
            owner, window = h5.find(spec)
            if owner != file_region or not (shown.start <= window.start and window.end <= shown.end):
                raise PgfUserError(f"--window {spec} is not inside the plotted region {shown.to_string(commas=True)}")
            windows.append(window)
    if not windows:
        windows = strongest_windows(scores.score, shown, request.logo_width, request.logos)
    elements = overlapping(read_bed_elements(request.bed), shown) if request.bed else []
    effect = read_effect(request.effect, request.effect_variant, request.effect_channel) if request.effect else None
    if effect is not None and (effect.region.chrom != shown.chrom or effect.region.end <= shown.start or effect.region.start >= shown.end):
        reporter.warn(f"the effect file's region {effect.region} does not overlap {shown}; its track is empty")
    title = f"{request.h5.name}: {shown.to_string(commas=True)}  {method} of {target}"
    fig, _ = figure.draw(scores, windows, elements, effect, title)
    figure.save(fig, request.output, request.force)
    return PlotResult(shown, windows, element_ranks(scores.score, shown, elements))
