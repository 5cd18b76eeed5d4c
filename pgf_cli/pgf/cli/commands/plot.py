"""`pgf plot`: the attribution track, sequence logos of its strongest windows and overlays (a figure)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pgf.cli.errors import run_guarded
from pgf.cli.options import BedOption, ForceOption, H5Argument, QuietOption, output_option, region_option
from pgf.cli.progress import RichReporter
from pgf.workflows.plot import PlotRequest, run_plot


def plot(
    ctx: typer.Context,
    h5: H5Argument,
    *,
    region: Annotated[
        Optional[str], region_option("Part of the file to plot: CHROM:START-END (1-based) inside one of its regions, or a region name.")
    ] = None,
    window: Annotated[
        list[str], typer.Option("--window", metavar="CHROM:START-END", help="Logo window (repeatable; default: the strongest ones).")
    ] = [],
    logo_width: Annotated[int, typer.Option("--logo-width", min=2, metavar="BP", help="Width of the strongest windows.")] = 20,
    logos: Annotated[int, typer.Option("--logos", min=0, metavar="N", help="How many strongest windows get a logo.")] = 2,
    bed: BedOption = None,
    effect: Annotated[
        Optional[Path], typer.Option("--effect", metavar="EFFECT.h5", help="A `pgf effect` output: one variant's effect track.")
    ] = None,
    effect_variant: Annotated[
        Optional[str], typer.Option("--effect-variant", metavar="NAME", help="Variant of --effect shown (default: the first).")
    ] = None,
    effect_channel: Annotated[
        Optional[str], typer.Option("--effect-channel", metavar="CHANNEL", help="Output channel of --effect (default: the first).")
    ] = None,
    output: Annotated[Path, output_option("OUT", "Figure: .png, .svg or .pdf.")],
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    r"""Plot the attribution track, sequence logos of its strongest windows and overlays.

    With --bed, prints how each element overlapping the region ranks: its best base's
    rank by |score|, its bases in the region's top 1% and its best base over the median.
    Needs the plot extra: pip install "pgf\[plot]".
    """
    request = PlotRequest(h5=h5, output=output, region=region, windows=list(window), logo_width=logo_width, logos=logos,
                          bed=bed, effect=effect, effect_variant=effect_variant, effect_channel=effect_channel, force=force)

    def work() -> None:
        with RichReporter(quiet=quiet) as reporter:
            result = run_plot(request, reporter)
            for rank in result.ranks:
                typer.echo(rank.line())
            reporter.info(f"wrote {output} ({result.region.to_string(commas=True)}, {len(result.windows)} logo window(s))")

    run_guarded(work, ctx)
