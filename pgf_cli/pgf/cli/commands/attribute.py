"""`pgf attribute`: per-base sensitivities of a model's target to every base of the given regions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pgf.cli.errors import command_line, run_guarded
from pgf.cli.options import (
    BaselineOption,
    DeviceOption,
    DTypeOption,
    EngineName,
    FastaArgument,
    ForceOption,
    FormatOption,
    Overlap,
    OverlapOption,
    IsmMaxOption,
    IsmWindowOption,
    KernelsOption,
    Method,
    ModelOption,
    NBaselinesOption,
    QuietOption,
    RcAverageOption,
    SamplesOption,
    SeedOption,
    StepsOption,
    TargetOption,
    VocabOption,
    output_option,
    region_option,
    tile_option,
)
from pgf.cli.progress import RichReporter
from pgf.engine import DEFAULT_ENGINE, TILE_HELP
from pgf.models.registry import BUILTIN
from pgf.workflows.attribute import AttributeRequest, run_attribute
from pgf.workflows.interpret import DEFAULT_MAX_ISM_POSITIONS, MethodOptions
from pgf.workflows.kernels import DEFAULT_KERNELS
from pgf.workflows.methods import DEFAULT_METHOD

METHOD_HELP = (
    "Per-base score from the gradient g: 'gradient' = L2 norm of g over the 4 bases; "
    "'input-x-gradient' = g at the observed base; 'hypothetical' = g minus its mean over bases, "
    "at the observed base; 'taylor-ism' = mean |g(alt) - g(ref)| over the 3 alternatives (all 3 stored in .h5). "
    "'integrated-gradients' / 'expected-gradients': the attribution summed over bases (datasets of the same name); "
    "'ism': exact f(mutant) - f(ref) at every alternative (dataset ism), score = -(sum over alternatives)/4. "
    "N/IUPAC positions get no score."
)


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
    genome: Annotated[
        bool, typer.Option("--genome", help="Every sequence of the FASTA, in windows (--window/--stride), between its "
                                            "assembly gaps (100+ N: not computed, no data in the track).")
    ] = False,
    chroms: Annotated[
        Optional[str], typer.Option("--chroms", metavar="LIST", help="--genome: only these sequences (comma-separated).")
    ] = None,
    exclude_chroms: Annotated[
        Optional[str], typer.Option("--exclude-chroms", metavar="PATTERN",
                                    help="--genome: leave out sequences whose whole name matches this regular expression "
                                         "(e.g. 'chrUn.*|.*_random|chrM').")
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
        Optional[int], tile_option(f"Positions recomputed at a time by the pgf engine (default {TILE_HELP}).")
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
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (regions, bp, windows) and a time estimate from one window "
                                             "timed on this machine; compute and write nothing.")
    ] = False,
    output: Annotated[Path, output_option("OUT", "Output file: .h5/.hdf5, .bedgraph/.bg or .bw/.bigwig.")],
    fmt: FormatOption = None,
    overlap: OverlapOption = Overlap.mean,
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
        overlap=overlap.value,
        force=force,
        resume=resume,
        shard=shard,
        devices=devices,
        log_json=log_json,
        command_line=command_line(ctx),
        genome_wide=genome,
        chroms=[name.strip() for name in chroms.split(",") if name.strip()] if chroms else None,
        exclude_chroms=exclude_chroms,
        dry_run=dry_run,
    )

    def work() -> None:
        with RichReporter(quiet=quiet) as reporter:
            summaries = run_attribute(request, reporter)
            if dry_run:
                return
            computed = len(summaries)
            count, total = reporter.job_size if reporter.job_size else (computed, sum(len(s.region) for s in summaries))
            resumed = f"; {count - computed} from the partial output" if count > computed else ""
            reporter.info(f"wrote {output} ({count} region{'s' if count != 1 else ''}, {total:,} bp{resumed})")

    run_guarded(work, ctx)
