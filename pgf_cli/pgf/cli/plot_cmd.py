"""`pgf plot` and `pgf report`: see the attributions (a figure; an igv.js page or an IGV session)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pgf.cli.errors import run_guarded
from pgf.cli.options import ForceOption, QuietOption, region_option
from pgf.cli.progress import RichReporter
from pgf.workflows.plot import PlotRequest, run_plot
from pgf.workflows.report import ReportRequest, run_report

H5Argument = Annotated[Path, typer.Argument(metavar="IN.h5", help="A `pgf attribute` HDF5 output.")]
BedOption = Annotated[
    Optional[Path], typer.Option("--bed", metavar="BED", help="Elements to overlay (BED: chrom, start, end, optional name).")
]


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
    output: Annotated[Path, typer.Option("--output", "-o", metavar="OUT", help="Figure: .png, .svg or .pdf.")],
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


def report(
    ctx: typer.Context,
    h5: H5Argument,
    *,
    fasta: Annotated[Path, typer.Option("--fasta", metavar="FASTA", help="The genome the attributions were computed on.")],
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", metavar="REPORT.html", help="Self-contained igv.js page.")
    ] = None,
    igv_session: Annotated[
        Optional[Path], typer.Option("--igv-session", metavar="SESSION.xml", help="IGV desktop session opening the FASTA and the tracks.")
    ] = None,
    bigwig: Annotated[
        Optional[Path], typer.Option("--bigwig", metavar="TRACK.bw", help="The session's score track (default: SESSION with .bw).")
    ] = None,
    region: Annotated[
        list[str], region_option("Region shown (repeatable; CHROM:START-END inside a region of the file, or its name). Default: all.")
    ] = [],
    bed: BedOption = None,
    vcf: Annotated[Optional[Path], typer.Option("--vcf", metavar="VCF", help="Variants to show and list.")] = None,
    top: Annotated[int, typer.Option("--top", min=0, metavar="N", help="Top-scoring bases listed per region.")] = 5,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    r"""Write a self-contained igv.js page (-o) and/or an IGV desktop session (--igv-session).

    The page needs no network: igv.js, the reference bases and the tracks are inside it.
    Needs the report extra for the page: pip install "pgf\[report]".
    """
    request = ReportRequest(h5=h5, fasta=fasta, output=output, igv_session=igv_session, bigwig=bigwig,
                            regions=list(region) or None, bed=bed, vcf=vcf, top=top, force=force)

    def work() -> None:
        with RichReporter(quiet=quiet) as reporter:
            run_report(request, reporter)

    run_guarded(work, ctx)
