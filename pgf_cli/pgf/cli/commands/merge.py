"""`pgf merge`: join shard outputs into one HDF5, bedGraph or bigWig."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgf.cli.errors import command_line, run_guarded
from pgf.cli.options import ForceOption, FormatOption, Overlap, OverlapOption, QuietOption, output_option
from pgf.cli.progress import RichReporter
from pgf.workflows.merge import MergeRequest, run_merge


def merge(
    ctx: typer.Context,
    parts: Annotated[list[Path], typer.Argument(metavar="PART.h5...", help="HDF5 outputs of pgf attribute (e.g. one per --shard).")],
    *,
    output: Annotated[Path, output_option("OUT", "Merged output: .h5/.hdf5, .bedgraph/.bg or .bw/.bigwig.")],
    fmt: FormatOption = None,
    overlap: OverlapOption = Overlap.mean,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Join the outputs of shards (pgf attribute --shard K/N) into one output.

    The parts must agree on model checksum, target, method, dtype and tool version, and hold no region twice.
    """
    request = MergeRequest(parts=list(parts), output=output, fmt=fmt.value if fmt is not None else None,
                           force=force, command_line=command_line(ctx), overlap=overlap.value)

    def work() -> None:
        with RichReporter(quiet=quiet) as reporter:
            regions, bp = run_merge(request, reporter)
            reporter.info(f"wrote {output} ({regions} region{'s' if regions != 1 else ''}, {bp:,} bp, from {len(parts)} parts)")

    run_guarded(work, ctx)
