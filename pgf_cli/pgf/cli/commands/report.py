"""`pgf report`: see the attributions in a genome browser (an igv.js page; an IGV desktop session)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pgf.cli.errors import run_guarded
from pgf.cli.options import BedOption, ForceOption, H5Argument, QuietOption, output_option, region_option, vcf_option
from pgf.cli.progress import RichReporter
from pgf.workflows.report import ReportRequest, run_report


def report(
    ctx: typer.Context,
    h5: H5Argument,
    *,
    fasta: Annotated[Path, typer.Option("--fasta", metavar="FASTA", help="The genome the attributions were computed on.")],
    output: Annotated[Optional[Path], output_option("REPORT.html", "Self-contained igv.js page.")] = None,
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
    vcf: Annotated[Optional[Path], vcf_option("Variants to show and list.")] = None,
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
