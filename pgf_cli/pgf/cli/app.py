"""The `pgf` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

import pgf
from pgf.cli.errors import CliState, command_line, run_guarded
from pgf.cli.export_cmd import export_app
from pgf.cli.merge_cmd import merge
from pgf.cli.models_cmd import models_app
from pgf.cli.plot_cmd import plot, report
from pgf.cli.options import (
    DeviceOption,
    DTypeOption,
    EffectMode,
    EngineName,
    FastaArgument,
    ForceOption,
    Format,
    KernelsOption,
    BaselineOption,
    IsmMaxOption,
    IsmWindowOption,
    Method,
    ModelOption,
    NBaselinesOption,
    RcAverageOption,
    SamplesOption,
    SeedOption,
    StepsOption,
    QuietOption,
    TargetOption,
    VocabOption,
    region_option,
    tile_option,
)
from pgf.cli.progress import RichReporter
from pgf.engine import DEFAULT_ENGINE, DEFAULT_TILE
from pgf.models.registry import BUILTIN
from pgf.workflows.attribute import AttributeRequest, run_attribute
from pgf.workflows.check import CheckRequest, run_check
from pgf.workflows.effect import EffectRequest, run_effect
from pgf.workflows.interpret import DEFAULT_MAX_ISM_POSITIONS, MethodOptions
from pgf.workflows.kernels import DEFAULT_KERNELS
from pgf.workflows.methods import DEFAULT_METHOD

app = typer.Typer(
    name="pgf",
    help="Exact per-base input sensitivities of selective state-space DNA models (Phase Gradient Flow).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models_app, name="models")
app.add_typer(export_app, name="export")
app.command()(merge)
app.command()(plot)
app.command()(report)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pgf {pgf.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    ctx.ensure_object(CliState).debug = debug


METHOD_HELP = (
    "Per-base score from the gradient g: 'gradient' = L2 norm of g over the 4 bases; "
    "'input-x-gradient' = g at the observed base; 'hypothetical' = g minus its mean over bases, "
    "at the observed base; 'taylor-ism' = mean |g(alt) - g(ref)| over the 3 alternatives (all 3 stored in .h5). "
    "'integrated-gradients' / 'expected-gradients': the attribution summed over bases (datasets of the same name); "
    "'ism': exact f(mutant) - f(ref) at every alternative (dataset ism), score = -(sum over alternatives)/4. "
    "N/IUPAC positions get no score."
)


@app.command()
def attribute(
    ctx: typer.Context,
    fasta: FastaArgument,
    *,  # keyword-only: required options may follow optional ones, in the order --help lists them
    region: Annotated[
        list[str],
        region_option("Region CHROM:START-END, 1-based inclusive, commas allowed; or a whole CHROM. Repeatable."),
    ] = [],
    regions: Annotated[
        Optional[Path], typer.Option("--regions", metavar="BED", help="BED file of regions (0-based half-open, optional name column).")
    ] = None,
    model: ModelOption = BUILTIN,
    target: TargetOption = None,
    target_window: Annotated[
        Optional[str],
        typer.Option(
            "--target-window", metavar="REGION", help="Restrict a sum or loglik target to CHROM:START-END (1-based, inside every region)."
        ),
    ] = None,
    vocab: VocabOption = None,
    method: Annotated[Method, typer.Option("--method", help=METHOD_HELP)] = DEFAULT_METHOD,
    baseline: BaselineOption = None,
    steps: StepsOption = 32,
    n_baselines: NBaselinesOption = 1,
    samples: SamplesOption = 32,
    seed: SeedOption = 0,
    ism_window: IsmWindowOption = None,
    ism_max_positions: IsmMaxOption = DEFAULT_MAX_ISM_POSITIONS,
    rc_average: RcAverageOption = False,
    engine: Annotated[
        EngineName,
        typer.Option(
            "--engine",
            help="'pgf': the tiled adjoint sweep, exact and memory-bounded (default); 'autograd': plain reverse mode, the reference.",
        ),
    ] = DEFAULT_ENGINE,
    device: DeviceOption = "auto",
    tile: Annotated[
        Optional[int], tile_option(f"Positions recomputed at a time by the pgf engine (default {DEFAULT_TILE}).")
    ] = None,
    offload: Annotated[
        Optional[bool],
        typer.Option(
            "--offload/--no-offload",
            help="Keep each layer's input on host memory (pgf engine on a GPU). Default: when they would take over half the free GPU memory.",
        ),
    ] = None,
    batch_size: Annotated[
        Optional[int],
        typer.Option(
            "--batch-size", min=1, metavar="N",
            help="Equal-length regions computed together (default: pgf engine up to 262,144 positions per batch; autograd 1).",
        ),
    ] = None,
    window: Annotated[
        Optional[int],
        typer.Option(
            "--window", min=1, metavar="W",
            help="Compute context-sized windows of W bp instead of one pass: each base keeps the gradient of the window "
            "whose centre crop (--stride bp) holds it, that window's target being the target over the window alone.",
        ),
    ] = None,
    stride: Annotated[
        Optional[int], typer.Option("--stride", min=1, metavar="S", help="Crop kept from each window (default: W).")
    ] = None,
    dtype: DTypeOption = "float32",
    kernels: KernelsOption = DEFAULT_KERNELS,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the partial output (OUT.partial) of an interrupted run of the same command: done regions are skipped."),
    ] = False,
    shard: Annotated[
        Optional[str],
        typer.Option("--shard", metavar="K/N", help="Compute only the K-th of N shards of the regions (balanced by bp; join the parts with pgf merge)."),
    ] = None,
    devices: Annotated[
        Optional[str],
        typer.Option("--devices", metavar="LIST", help="One worker process per device: cuda:0,cuda:1 | all (every GPU) | cpu,cpu. Overrides --device."),
    ] = None,
    log_json: Annotated[
        Optional[Path],
        typer.Option("--log-json", metavar="FILE", help="Append one JSON line per finished region (seconds, bp/s, peak memory, device)."),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="OUT", help="Output file: .h5/.hdf5, .bedgraph/.bg or .bw/.bigwig.")
    ],
    fmt: Annotated[Optional[Format], typer.Option("--format", help="Output format, when the suffix does not say.")] = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Per-base sensitivities of a model's target to every base of the given regions.

    Finished batches are kept in OUT.partial (a folder beside OUT) as they complete; on success it becomes OUT.
    After an interruption (Ctrl-C, SIGTERM, a crash) rerun the same command with --resume.
    """
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
        method_options=MethodOptions(
            method.value, baseline=baseline.value if baseline is not None else None, steps=steps, n_baselines=n_baselines,
            samples=samples, seed=seed, ism_region=ism_window, ism_max_positions=ism_max_positions, rc_average=rc_average,
        ),
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
        resume=resume,
        shard=shard,
        devices=devices,
        log_json=log_json,
        command_line=command_line(ctx),
    )

    def work() -> None:
        with RichReporter(quiet=quiet) as reporter:
            summaries = run_attribute(request, reporter)
            computed = len(summaries)
            count, total = reporter.job_size if reporter.job_size else (computed, sum(len(s.region) for s in summaries))
            resumed = f"; {count - computed} from the partial output" if count > computed else ""
            reporter.info(f"wrote {output} ({count} region{'s' if count != 1 else ''}, {total:,} bp{resumed})")

    run_guarded(work, ctx)


@app.command()
def effect(
    ctx: typer.Context,
    fasta: FastaArgument,
    *,
    region: Annotated[str, region_option("Region CHROM:START-END (1-based) whose outputs are tracked.")],
    variant: Annotated[
        list[str], typer.Option("--variant", metavar="CHROM:POS:REF>ALT", help="A SNV, 1-based (repeatable).")
    ] = [],
    vcf: Annotated[
        Optional[Path], typer.Option("--vcf", metavar="VCF", help="SNVs from a VCF (plain or gzip); multi-allelic records split per ALT.")
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
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="OUT.h5", help="HDF5: one group per variant with (L, channels) effect datasets.")
    ],
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
    tile: Annotated[Optional[int], tile_option(f"Positions computed at a time (default {DEFAULT_TILE}).")] = None,
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


@app.command()
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


def main() -> None:
    """Console-script entry point."""
    app()
