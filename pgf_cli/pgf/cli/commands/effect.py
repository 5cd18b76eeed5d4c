"""`pgf effect`: effect of SNVs (or impulses) on every output position of a region."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pgf.cli.errors import run_guarded
from pgf.cli.options import (
    DeviceOption,
    DTypeOption,
    EffectMode,
    FastaArgument,
    ForceOption,
    KernelsOption,
    ModelOption,
    QuietOption,
    VocabOption,
    output_option,
    region_option,
    tile_option,
    vcf_option,
)
from pgf.cli.progress import RichReporter
from pgf.engine import TILE_HELP
from pgf.models.registry import BUILTIN
from pgf.workflows.effect import EffectRequest, run_effect
from pgf.workflows.kernels import DEFAULT_KERNELS


def effect(
    ctx: typer.Context,
    fasta: FastaArgument,
    *,
    region: Annotated[str, region_option("Region CHROM:START-END (1-based) whose outputs are tracked.")],
    variant: Annotated[
        list[str], typer.Option("--variant", metavar="CHROM:POS:REF>ALT", help="A SNV, 1-based (repeatable).")
    ] = [],
    vcf: Annotated[
        Optional[Path], vcf_option("SNVs from a VCF (plain or gzip); multi-allelic records split per ALT.")
    ] = None,
    impulse: Annotated[
        list[str],
        typer.Option("--impulse", metavar="POS[:BASE]", help="A unit impulse on one base at a 1-based position (default: the reference base)."),
    ] = [],
    model: ModelOption = BUILTIN,
    vocab: VocabOption = None,
    mode: Annotated[
        EffectMode,
        typer.Option(
            "--mode",
            help="'linear': J·v from one tangent sweep shared by all variants; 'exact': output(alt) - output(ref) from forward sweeps; 'both'.",
        ),
    ] = "linear",
    channel: Annotated[
        Optional[str],
        typer.Option("--channel", metavar="CHANNEL", help="Output channel summarised in the TSV and the track (default: the first)."),
    ] = None,
    output: Annotated[Path, output_option("OUT.h5", "HDF5: one group per variant with (L, channels) effect datasets.")],
    summary: Annotated[
        Optional[Path], typer.Option("--summary", metavar="TSV", help="Per-variant summary (default: OUT with .tsv).")
    ] = None,
    track: Annotated[
        Optional[Path], typer.Option("--track", metavar="FILE", help="One variant's effect as bedGraph or bigWig.")
    ] = None,
    track_variant: Annotated[
        Optional[str],
        typer.Option(
            "--track-variant", metavar="NAME", help="Which variant --track shows (CHROM:POS:REF>ALT or VCF ID; default: the first)."
        ),
    ] = None,
    skip_mismatch: Annotated[
        bool, typer.Option("--skip-mismatch", help="Skip variants whose REF differs from the FASTA (default: stop with an error).")
    ] = False,
    tile: Annotated[Optional[int], tile_option(f"Positions computed at a time (default {TILE_HELP}).")] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, metavar="N", help="Variants sharing one primal sweep.")
    ] = 32,
    device: DeviceOption = "auto",
    dtype: DTypeOption = "float32",
    kernels: KernelsOption = DEFAULT_KERNELS,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Effect of SNVs (or impulses) on every output position of a region: linear (tangent) and/or exact.

    Only single-nucleotide variants are accepted; indels and multi-base records are refused.
    Language models track log p(reference base) per position; track models their head's channels.
    """
    request = EffectRequest(
        fasta=fasta, region=region, output=output, variants=list(variant), vcf=vcf, impulses=list(impulse),
        model=model, vocab=vocab, mode=mode.value, channel=channel, summary=summary, track=track,
        track_variant=track_variant, skip_mismatch=skip_mismatch, tile=tile, batch_size=batch_size,
        device=device.value, dtype=dtype.value, force=force, kernels=kernels.value,
    )

    def work() -> None:
        with RichReporter(quiet=quiet) as reporter:
            run_effect(request, reporter)

    run_guarded(work, ctx)
