"""`pgf check`: self-test of the pgf engine against plain autograd on a short slice."""

from __future__ import annotations

from typing import Annotated

import typer

from pgf.cli.errors import run_guarded
from pgf.cli.options import (
    DeviceOption,
    DTypeOption,
    FastaArgument,
    KernelsOption,
    ModelOption,
    TargetOption,
    VocabOption,
    region_option,
    tile_option,
)
from pgf.models.registry import BUILTIN
from pgf.workflows.check import CheckRequest, run_check
from pgf.workflows.kernels import DEFAULT_KERNELS


def check(
    ctx: typer.Context,
    fasta: FastaArgument,
    region: Annotated[str, region_option("Region CHROM:START-END (1-based); its first --length bp are used.")],
    model: ModelOption = BUILTIN,
    length: Annotated[
        int, typer.Option("--length", min=1, metavar="N", help="Positions to compare (plain autograd must fit).")
    ] = 2000,
    tile: Annotated[int, tile_option("Tile of the pgf engine (small, to cross many tile edges).")] = 256,
    target: TargetOption = None,
    vocab: VocabOption = None,
    device: DeviceOption = "auto",
    dtype: DTypeOption = "float32",
    kernels: KernelsOption = DEFAULT_KERNELS,
) -> None:
    """Self-test: run the pgf and autograd engines on a short slice and print how far apart they are.

    Exit code 0 when the largest difference is within the tolerance of the dtype
    (relative to the largest gradient entry), 1 when it is not.
    """
    request = CheckRequest(
        fasta=fasta, region=region, model=model, length=length, tile=tile, target=target,
        dtype=dtype.value, device=device.value, vocab=vocab, kernels=kernels.value,
    )

    def work() -> None:
        result = run_check(request)
        typer.echo(f"region             {result.region.to_string(commas=True)} ({len(result.region):,} bp, tile {result.tile}, {result.dtype})")
        typer.echo(f"target             autograd {result.target_autograd:.9g}   pgf {result.target_pgf:.9g}")
        typer.echo(f"max |difference|   {result.max_abs_difference:.3e}")
        typer.echo(f"max relative       {result.max_rel_difference:.3e} (of the largest |gradient|; tolerance {result.tolerance:.0e})")
        typer.echo(f"time               autograd {result.seconds_autograd:.2f} s   pgf {result.seconds_pgf:.2f} s")
        if not result.passed:
            typer.echo("FAILED: the engines disagree beyond the tolerance; please report this with the command line", err=True)
            raise typer.Exit(1)
        typer.echo("OK: the engines agree")

    run_guarded(work, ctx)
