"""`pgf export`: hand attributions to other tools (TF-MoDISco)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pgf.cli.errors import run_guarded
from pgf.cli.options import ForceOption, H5Argument, QuietOption, output_option
from pgf.workflows.export import ExportModiscoRequest, run_export_modisco

export_app = typer.Typer(help="Hand attributions to other tools (TF-MoDISco).", no_args_is_help=True)


@export_app.command("modisco")
def modisco(
    ctx: typer.Context,
    h5: H5Argument,
    *,
    prefix: Annotated[Path, output_option("PREFIX", "Writes PREFIX.ohe.npz, PREFIX.hyp.npz, PREFIX.bed.")],
    window: Annotated[
        Optional[int], typer.Option("--window", "-w", min=2, metavar="W", help="Example width, even (default: the regions' common length).")
    ] = None,
    center: Annotated[
        str, typer.Option("--center", metavar="region|peak", help="Centre each window on the region's middle or its highest |score|.")
    ] = "region",
    dataset: Annotated[
        Optional[str],
        typer.Option("--dataset", metavar="NAME", help="(L, 4) dataset whose mean-centred values are the hypothetical contributions "
                     "(default: 'hypothetical', else 'gradient').")
    ] = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Write TF-MoDISco inputs: modisco motifs -s PREFIX.ohe.npz -a PREFIX.hyp.npz -w W.

    Arrays are (N, 4, W) float32 (A C G T, length last), saved positionally (arr_0); row i of
    PREFIX.bed is example i in genome coordinates (0-based half-open).
    """
    request = ExportModiscoRequest(h5=h5, prefix=prefix, window=window, center=center, dataset=dataset, force=force)

    def work() -> None:
        summary = run_export_modisco(request)
        if not quiet:
            typer.echo(f"wrote {', '.join(map(str, summary.paths))} ({summary.examples} examples of {summary.width} bp); "
                       f"next: modisco motifs -s {summary.paths[0]} -a {summary.paths[1]} -w {summary.width} -o OUT.h5")

    run_guarded(work, ctx)
