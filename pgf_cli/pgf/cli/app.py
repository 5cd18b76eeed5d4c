"""The `pgf` command."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

import pgf
from pgf.cli.errors import Settings, run_guarded
from pgf.cli.models_cmd import VOCAB_HELP, models_app
from pgf.cli.progress import RichReporter
from pgf.engine.adjoint import DEFAULT_TILE
from pgf.engine.registry import DEFAULT_ENGINE, ENGINES
from pgf.io.writers import FORMATS
from pgf.models.registry import BUILTIN
from pgf.models.targets import TARGET_HELP
from pgf.workflows.attribute import DTYPES, AttributeRequest, run_attribute
from pgf.workflows.check import run_check
from pgf.workflows.effect import EffectRequest, run_effect
from pgf.workflows.kernels import DEFAULT_KERNELS, KERNELS_HELP
from pgf_kernels import BACKENDS
from pgf.workflows.methods import DEFAULT_METHOD, METHODS

app = typer.Typer(
    name="pgf",
    help="Exact per-base input sensitivities of selective state-space DNA models (Phase Gradient Flow).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models_app, name="models")

Method = Enum("Method", {name: name for name in METHODS}, type=str)
EngineName = Enum("EngineName", {name: name for name in ENGINES}, type=str)
Device = Enum("Device", {name: name for name in ("auto", "cpu", "cuda")}, type=str)
Format = Enum("Format", {name: name for name in FORMATS}, type=str)
DType = Enum("DType", {name: name for name in DTYPES}, type=str)
Kernels = Enum("Kernels", {name: name for name in BACKENDS}, type=str)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pgf {pgf.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    Settings.debug = debug


METHOD_HELP = (
    "Per-base score from the gradient g: 'gradient' = L2 norm of g over the 4 bases; "
    "'input-x-gradient' = g at the observed base; 'hypothetical' = g minus its mean over bases, "
    "at the observed base; 'taylor-ism' = mean |g(alt) - g(ref)| over the 3 alternatives (all 3 stored in .h5). "
    "N/IUPAC positions get no score."
)


@app.command()
def attribute(
    fasta: Path = typer.Argument(..., metavar="FASTA", help="Reference FASTA (plain or bgzip); its .fai is built if missing."),
    region: list[str] = typer.Option(
        [], "--region", "-r", metavar="REGION", help="Region CHROM:START-END, 1-based inclusive, commas allowed; or a whole CHROM. Repeatable."
    ),
    regions: Optional[Path] = typer.Option(None, "--regions", metavar="BED", help="BED file of regions (0-based half-open, optional name column)."),
    model: str = typer.Option(BUILTIN, "--model", "-m", metavar="MODEL", help="'builtin', 'random-test' (untrained, for smoke tests) or a checkpoint directory."),
    target: Optional[str] = typer.Option(None, "--target", "-t", metavar="TARGET", help=TARGET_HELP),
    target_window: Optional[str] = typer.Option(
        None, "--target-window", metavar="REGION",
        help="Restrict a sum or loglik target to CHROM:START-END (1-based, inside every region).",
    ),
    vocab: Optional[str] = typer.Option(None, "--vocab", metavar="A=ID,C=ID,G=ID,T=ID,N=ID", help=VOCAB_HELP),
    method: Method = typer.Option(DEFAULT_METHOD, "--method", help=METHOD_HELP),
    engine: EngineName = typer.Option(
        DEFAULT_ENGINE, "--engine",
        help="'pgf': the tiled adjoint sweep, exact and memory-bounded (default); 'autograd': plain reverse mode, the reference.",
    ),
    device: Device = typer.Option("auto", "--device", help="Where to compute; auto = CUDA when available."),
    tile: Optional[int] = typer.Option(
        None, "--tile", min=1, metavar="N", help=f"Positions recomputed at a time by the pgf engine (default {DEFAULT_TILE})."
    ),
    offload: Optional[bool] = typer.Option(
        None, "--offload/--no-offload",
        help="Keep each layer's input on host memory (pgf engine on a GPU). Default: when they would take over half the free GPU memory.",
    ),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", min=1, metavar="N",
        help="Equal-length regions computed together (default: pgf engine up to 262,144 positions per batch; autograd 1).",
    ),
    window: Optional[int] = typer.Option(
        None, "--window", min=1, metavar="W",
        help="Compute context-sized windows of W bp instead of one pass: each base keeps the gradient of the window "
        "whose centre crop (--stride bp) holds it, that window's target being the target over the window alone.",
    ),
    stride: Optional[int] = typer.Option(None, "--stride", min=1, metavar="S", help="Crop kept from each window (default: W)."),
    dtype: DType = typer.Option("float32", "--dtype", help="Compute dtype of weights and activations."),
    kernels: Kernels = typer.Option(DEFAULT_KERNELS, "--kernels", help=KERNELS_HELP),
    output: Path = typer.Option(..., "--output", "-o", metavar="OUT", help="Output file: .h5/.hdf5, .bedgraph/.bg or .bw/.bigwig."),
    fmt: Optional[Format] = typer.Option(None, "--format", help="Output format, when the suffix does not say."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary lines."),
) -> None:
    """Per-base sensitivities of a model's target to every base of the given regions."""
    request = AttributeRequest(
        fasta=fasta,
        output=output,
        regions=list(region),
        bed=regions,
        model=model,
        target=target,
        target_window=target_window,
        vocab=vocab,
        method=method.value,
        engine=engine.value,
        device=device.value,
        tile=tile,
        offload=offload,
        batch_size=batch_size,
        window=window,
        stride=stride,
        dtype=dtype.value,
        kernels=kernels.value,
        fmt=fmt.value if fmt is not None else None,
        force=force,
    )

    def work() -> None:
        with RichReporter(quiet=quiet) as reporter:
            summaries = run_attribute(request, reporter)
            total = sum(len(s.region) for s in summaries)
            reporter.info(f"wrote {output} ({len(summaries)} region{'s' if len(summaries) != 1 else ''}, {total:,} bp)")

    run_guarded(work)


EffectMode = Enum("EffectMode", {name: name for name in ("linear", "exact", "both")}, type=str)


@app.command()
def effect(
    fasta: Path = typer.Argument(..., metavar="FASTA", help="Reference FASTA."),
    region: str = typer.Option(..., "--region", "-r", metavar="REGION", help="Region CHROM:START-END (1-based) whose outputs are tracked."),
    variant: list[str] = typer.Option([], "--variant", metavar="CHROM:POS:REF>ALT", help="A SNV, 1-based (repeatable)."),
    vcf: Optional[Path] = typer.Option(None, "--vcf", metavar="VCF", help="SNVs from a VCF (plain or gzip); multi-allelic records split per ALT."),
    impulse: list[str] = typer.Option([], "--impulse", metavar="POS[:BASE]", help="A unit impulse on one base at a 1-based position (default: the reference base)."),
    model: str = typer.Option(BUILTIN, "--model", "-m", metavar="MODEL", help="'builtin', 'random-test' or a checkpoint directory."),
    vocab: Optional[str] = typer.Option(None, "--vocab", metavar="A=ID,C=ID,G=ID,T=ID,N=ID", help=VOCAB_HELP),
    mode: EffectMode = typer.Option("linear", "--mode", help="'linear': J·v from one tangent sweep shared by all variants; 'exact': output(alt) - output(ref) from forward sweeps; 'both'."),
    channel: Optional[str] = typer.Option(None, "--channel", metavar="CHANNEL", help="Output channel summarised in the TSV and the track (default: the first)."),
    output: Path = typer.Option(..., "--output", "-o", metavar="OUT.h5", help="HDF5: one group per variant with (L, channels) effect datasets."),
    summary: Optional[Path] = typer.Option(None, "--summary", metavar="TSV", help="Per-variant summary (default: OUT with .tsv)."),
    track: Optional[Path] = typer.Option(None, "--track", metavar="FILE", help="One variant's effect as bedGraph or bigWig."),
    track_variant: Optional[str] = typer.Option(None, "--track-variant", metavar="NAME", help="Which variant --track shows (CHROM:POS:REF>ALT or VCF ID; default: the first)."),
    skip_mismatch: bool = typer.Option(False, "--skip-mismatch", help="Skip variants whose REF differs from the FASTA (default: stop with an error)."),
    tile: Optional[int] = typer.Option(None, "--tile", min=1, metavar="N", help=f"Positions computed at a time (default {DEFAULT_TILE})."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, metavar="N", help="Variants sharing one primal sweep."),
    device: Device = typer.Option("auto", "--device", help="Where to compute."),
    dtype: DType = typer.Option("float32", "--dtype", help="Compute dtype."),
    kernels: Kernels = typer.Option(DEFAULT_KERNELS, "--kernels", help=KERNELS_HELP),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing outputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary lines."),
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

    run_guarded(work)


@app.command()
def check(
    fasta: Path = typer.Argument(..., metavar="FASTA", help="Reference FASTA."),
    region: str = typer.Option(..., "--region", "-r", metavar="REGION", help="Region CHROM:START-END (1-based); its first --length bp are used."),
    model: str = typer.Option(BUILTIN, "--model", "-m", metavar="MODEL", help="'builtin', 'random-test' or a checkpoint directory."),
    length: int = typer.Option(2000, "--length", min=1, metavar="N", help="Positions to compare (plain autograd must fit)."),
    tile: int = typer.Option(256, "--tile", min=1, metavar="N", help="Tile of the pgf engine (small, to cross many tile edges)."),
    target: Optional[str] = typer.Option(None, "--target", "-t", metavar="TARGET", help=TARGET_HELP),
    vocab: Optional[str] = typer.Option(None, "--vocab", metavar="A=ID,C=ID,G=ID,T=ID,N=ID", help=VOCAB_HELP),
    device: Device = typer.Option("auto", "--device", help="Where to compute."),
    dtype: DType = typer.Option("float32", "--dtype", help="Compute dtype."),
    kernels: Kernels = typer.Option(DEFAULT_KERNELS, "--kernels", help=KERNELS_HELP),
) -> None:
    """Self-test: run the pgf and autograd engines on a short slice and print how far apart they are.

    Exit code 0 when the largest difference is within the tolerance of the dtype
    (relative to the largest gradient entry), 1 when it is not.
    """

    def work() -> None:
        result = run_check(str(fasta), region, model, length, tile, target, dtype.value, device.value, vocab, kernels.value)
        typer.echo(f"region             {result.region.to_string(commas=True)} ({len(result.region):,} bp, tile {result.tile}, {result.dtype})")
        typer.echo(f"target             autograd {result.target_autograd:.9g}   pgf {result.target_pgf:.9g}")
        typer.echo(f"max |difference|   {result.max_abs_difference:.3e}")
        typer.echo(f"max relative       {result.max_rel_difference:.3e} (of the largest |gradient|; tolerance {result.tolerance:.0e})")
        typer.echo(f"time               autograd {result.seconds_autograd:.2f} s   pgf {result.seconds_pgf:.2f} s")
        if not result.passed:
            typer.echo("FAILED: the engines disagree beyond the tolerance; please report this with the command line", err=True)
            raise typer.Exit(1)
        typer.echo("OK: the engines agree")

    run_guarded(work)


def main() -> None:
    """Console-script entry point."""
    app()
