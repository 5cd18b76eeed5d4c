"""`pgf attribute`: regions of a FASTA -> model -> engine -> per-base scores -> track file.

Completed batches go to a partial output (`OUT.partial/`, see pgf.io.partial)
as they finish; on success it becomes OUT. `resume` continues a partial output
of the same run; `shard` takes one part of the region list; `devices` runs one
worker process per device (pgf.workflows.devices).

`run_attribute` is a pipeline of steps, each usable on its own: `configure` (checks and
settings, no input read) -> `resolve_inputs` (regions of the FASTA) -> `plan_batches`
(batches, the shard) -> `resolve_model` (model, target, metadata) -> `open_partial`
(what a resumed run still has to do) -> `announce` -> `compute` -> `write_output`
(pgf.workflows.attribute_output).

Imports: attribute -> devices -> attribute_request; attribute -> attribute_output -> attribute_request.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

import time

import torch

import pgf
from pgf import stopping
from pgf.engine import Engine, Progress, get_engine
from pgf.errors import OutputError
from pgf.io.genome import Genome
from pgf.io.lock import exclusive_output
from pgf.io.partial import PartialStore
from pgf.io.regions import Region
from pgf.io.overlaps import check_rule
from pgf.io.tracks import RunMetadata, region_group_name
from pgf.io.writers import check_regions_fit_format
from pgf.models.registry import LoadedModel
from pgf.models.targets import Target
from pgf.workflows.attribute_output import (
    JsonLog,
    RunStopped,
    keeping_partial,
    now,
    provenance,
    run_identity,
    write_output,
)
from pgf.workflows.attribute_request import AttributeRequest, check_request, resolve_regions, resolve_target
from pgf.workflows.batch import BatchComputer, batch_size, encode, make_batches, region_bases_sha256
from pgf.workflows.common import RegionSummary, Reporter, SilentReporter, load_model_for_user, resolve_device, resolve_dtype
from pgf.workflows.devices import parse_devices, run_on_devices
from pgf.workflows.genome_plan import genome_regions
from pgf.workflows.interpret import MethodOptions, effective_options, resolve_ism_region
from pgf.workflows.kernels import checked_kernels
from pgf.workflows.shards import parse_shard, shard_batches
from pgf.workflows.windows import WindowSpan, window_spans

__all__ = [
    "AttributeRequest", "RunStopped", "resolve_regions", "run_attribute",
    "RunSettings", "Inputs", "BatchPlan", "ModelSetup", "PartialRun",
    "configure", "resolve_inputs", "plan_batches", "resolve_model", "open_partial", "announce", "compute",
    "compute_here", "write_output",
]

Batch = tuple[int, list[Region]]  # (index in the whole region list's batches, its regions)


@dataclass
class RunSettings:
    """The run's settings, checked before any input is read."""

    fmt: str  # output format: h5, bedgraph, bigwig
    dtype: torch.dtype
    devices: list[torch.device] | None  # --devices: one worker process each; None: this process computes
    engine: Engine
    device: torch.device  # where this process computes (cpu with --devices: the parent only plans)
    started: str

    @property
    def device_names(self) -> str:
        """The device(s) named in provenance and log lines."""
        return ",".join(str(d) for d in self.devices) if self.devices else str(self.device)


@dataclass
class Inputs:
    """The regions to compute, resolved against the FASTA, and the method's options for them."""

    regions: list[Region]
    options: MethodOptions
    gap_bp: int = 0  # --genome: bases in assembly gaps, not computed


@dataclass
class BatchPlan:
    """The batches this run (or shard) computes, numbered in the whole list's batches, and their regions."""

    batches: list[Batch]
    regions: list[Region]


@dataclass
class ModelSetup:
    """The loaded model, the target it is read out at, and the metadata stored with the scores."""

    loaded: LoadedModel
    target: Target
    metadata: RunMetadata


@dataclass
class PartialRun:
    """The run's partial output and what is left to compute in it."""

    store: PartialStore
    resumed: bool
    identity: dict[str, object]
    todo: list[Batch]  # batches with regions still to compute (done regions dropped)
    skipped: int  # regions already in a resumed partial output


def configure(request: AttributeRequest) -> RunSettings:
    """Check the request (no FASTA or model read yet) and pick dtype, devices, engine and device.
    With --devices, every worker device is checked for the kernels here (the workers compute)."""
    fmt = check_request(request)
    check_rule(request.overlap)
    dtype = resolve_dtype(request.dtype)
    devices = parse_devices(request.devices) if request.devices else None
    device = torch.device("cpu") if devices else resolve_device(request.device)
    for worker_device in devices or [device]:
        checked_kernels(request.kernels, worker_device)
    engine = get_engine(request.engine, request.tile, offload=request.offload, backend=request.kernels)
    return RunSettings(fmt, dtype, devices, engine, device, started=now())


def resolve_inputs(request: AttributeRequest, genome: Genome, fmt: str) -> Inputs:
    """The --region and BED regions, checked against the genome and the output format, with the
    method's options (an --ism-region resolved against the genome)."""
    gap_bp = 0
    if request.genome_wide:
        regions, gap_bp = genome_regions(genome, request.chroms, request.exclude_chroms)
    else:
        regions = resolve_regions(genome, request.regions, request.bed)
    check_regions_fit_format(regions, fmt, request.overlap)
    options = resolve_ism_region(effective_options(request.method, request.method_options), genome.chrom_sizes,
                                 [region.chrom for region in regions])
    return Inputs(regions, options, gap_bp)


def plan_batches(request: AttributeRequest, regions: list[Region], reporter: Reporter) -> BatchPlan:
    """Batches of the whole list (a shard, a resumed run and every worker compute these same batches);
    with --shard K/N only shard K's (a warning when it holds none)."""
    batches = list(enumerate(make_batches(regions, batch_size(request.batch_size, request.engine), bool(request.window))))
    if request.shard is not None:
        k, n = parse_shard(request.shard)
        count, batches = len(regions), shard_batches([batch for _, batch in batches], k, n)
        regions = [region for _, batch in batches for region in batch]
        if not regions:
            reporter.warn(f"shard {k}/{n} holds no region ({count} region{'s' if count != 1 else ''} in {n} shards); writing an empty output")
    return BatchPlan(batches, regions)


def resolve_model(request: AttributeRequest, settings: RunSettings, genome: Genome, regions: list[Region],
                  reporter: Reporter) -> ModelSetup:
    """Load the model on this process's device, resolve the target on `regions`, and describe the run."""
    loaded = load_model_for_user(request.model, settings.device, settings.dtype, request.vocab, reporter)
    target = resolve_target(request, loaded.model, genome, regions)
    metadata = RunMetadata(
        method=request.method, target=target.spec, model_id=loaded.info.model_id, model_checksum=loaded.info.checksum,
        model_trained=loaded.info.trained, engine=settings.engine.name, dtype=request.dtype, tool_version=pgf.__version__,
        model_revision=loaded.info.revision,
    )
    return ModelSetup(loaded, target, metadata)


def open_partial(request: AttributeRequest, genome: Genome, metadata: RunMetadata, plan: BatchPlan,
                 reporter: Reporter) -> PartialRun:
    """Create the partial output (or, with --resume, reopen it and drop the regions it already holds,
    once its batch files and the bases of its regions are checked: `check_resumed`)."""
    identity = run_identity(request, metadata, plan.regions)
    store, resumed = PartialStore.open(request.output, identity, metadata.attributes(), request.resume, request.force)
    done = check_resumed(store, genome, plan.regions, reporter) if resumed else set()
    todo = [(i, [r for r in batch if region_group_name(r) not in done]) for i, batch in plan.batches]
    todo = [(i, batch) for i, batch in todo if batch]
    total = len(plan.regions)
    skipped = total - sum(len(batch) for _, batch in todo)
    if resumed:
        reporter.info(f"resuming {store.folder}: {skipped} of {total} regions already done (skipped), {total - skipped} to compute")
    elif request.resume:
        reporter.info(f"nothing to resume ({store.folder} does not exist); starting")
    return PartialRun(store, resumed, identity, todo, skipped)


def check_resumed(store: PartialStore, genome: Genome, regions: list[Region], reporter: Reporter) -> set[str]:
    """The regions a resumed partial output holds, after its checks: a batch file that is not as it was
    written (truncated, changed) is removed, its regions to be computed again; a stored region computed
    on other bases than `genome` has now is an `OutputError` naming the region (same names and lengths,
    other bases: another FASTA)."""
    for path in store.remove_damaged():
        reporter.warn(f"{path.name} in {store.folder} is damaged (truncated or changed since it was written); "
                      "its regions are computed again")
    stored = store.stored_bases()
    for region in regions:
        recorded = stored.get(region_group_name(region), "")
        if recorded and recorded != region_bases_sha256(genome, region):
            raise OutputError(
                f"{store.folder} holds {region} computed on other bases than {genome.path} has there (another FASTA "
                "with the same sequence names and lengths?); resume with the FASTA it was computed on, or use --force "
                "to start again")
    return set(stored)


def announce(request: AttributeRequest, reporter: Reporter, context_length: int | None, plan: BatchPlan,
             run: PartialRun) -> None:
    """Tell the reporter what is about to be computed (a note on regions longer than the model's
    context; `job_started(total bp, done bp, regions, skipped)` for reporters that have it)."""
    if request.window is None and run.todo:
        _say_one_pass(reporter, context_length, [r for _, batch in run.todo for r in batch])
    job_started = getattr(reporter, "job_started", None)
    if job_started is not None:
        total_bp = sum(len(r) for r in plan.regions)
        job_started(total_bp, total_bp - sum(len(r) for _, b in run.todo for r in b), len(plan.regions), run.skipped)


def _say_one_pass(reporter: Reporter, context_length: int | None, regions: list[Region]) -> None:
    longest = max(len(region) for region in regions)
    if context_length and longest > context_length:
        reporter.info(
            f"note: regions up to {longest:,} bp exceed the model's trained context ({context_length:,} bp); "
            "computing each in one pass (the recurrence is defined for any length). "
            f"--window {context_length} --stride S computes context-sized windows instead."
        )


def compute(request: AttributeRequest, settings: RunSettings, genome: Genome, model: ModelSetup, options: MethodOptions,
            run: PartialRun, total: int, reporter: Reporter, log: JsonLog) -> list[RegionSummary]:
    """Compute every batch of `run.todo` into the partial output: on the --devices workers, else here."""
    if settings.devices:
        return run_on_devices(request, settings.devices, run.store, run.todo, total, reporter, log)
    return compute_here(request, settings, genome, model, options, run, total, reporter, log)


def checked(progress: Progress | None) -> Progress:
    """`progress`, checking first for a stop asked for by a signal (pgf.stopping): every sweep step is a
    point where a run can stop, even when the signal's own exception was swallowed."""

    def update(done: int, total: int) -> None:
        stopping.check()
        if progress is not None:
            progress(done, total)

    return update


def dry_run(request: AttributeRequest, settings: RunSettings, genome: Genome, model: ModelSetup, inputs: Inputs,
            plan: BatchPlan, reporter: Reporter) -> None:
    """Say what the run would compute and about how long it would take here (one window timed on this
    machine after a warm-up, times the windows); nothing is written."""
    regions = plan.regions
    spans = [window_spans(len(r), request.window, request.stride or request.window) if request.window else
             [WindowSpan(0, len(r), 0, len(r))] for r in regions]
    windows = sum(len(s) for s in spans)
    computed = sum(span.end - span.start for s in spans for span in s)
    sequences = len({r.chrom for r in regions})
    gaps = f" ({inputs.gap_bp:,} bp in assembly gaps skipped)" if request.genome_wide else ""
    reporter.info(f"dry run: {len(regions):,} regions on {sequences:,} sequences, {sum(len(r) for r in regions):,} bp{gaps}, "
                  f"{windows:,} {'windows' if request.window else 'passes'} ({computed:,} bp computed)")
    longest = max(regions, key=len)
    first = spans[regions.index(longest)][0]
    sample = Region(longest.chrom, longest.start + first.start, longest.start + first.end)
    inputs_ = torch.from_numpy(encode(genome, sample)).to(device=settings.device, dtype=settings.dtype).unsqueeze(0)
    readout = model.target.readout([sample.start])
    settings.engine.gradient(model.loaded.model, inputs_, readout)  # warm-up: compiled kernels, allocator
    began = time.perf_counter()
    settings.engine.gradient(model.loaded.model, inputs_, readout)
    elapsed = time.perf_counter() - began
    seconds = elapsed * computed / len(sample)
    reporter.info(f"calibration: {len(sample):,} bp in {elapsed:.2f} s on {settings.device} -> about "
                  f"{time.strftime('%H:%M:%S', time.gmtime(seconds))} for the job here (a plain gradient; batching "
                  f"usually makes it faster); nothing was computed or written")


def compute_here(request: AttributeRequest, settings: RunSettings, genome: Genome, model: ModelSetup,
                 options: MethodOptions, run: PartialRun, total: int, reporter: Reporter, log: JsonLog) -> list[RegionSummary]:
    """Compute `run.todo` batch by batch in this process; each region's summary is logged and reported."""
    computer = BatchComputer(genome, settings.engine, model.loaded.model, model.target, request.method, settings.device,
                             settings.dtype, run.store, request.window, request.stride, request.batch_size, options=options)
    summaries = []
    finished = run.skipped
    for index, batch in run.todo:
        stopping.check()
        progress = checked(reporter.region_started(batch, finished, total))
        for summary in computer.run(index, batch, progress):
            summaries.append(summary)
            log.write(summary)
            reporter.region_finished(summary)
        finished += len(batch)
    return summaries


def run_attribute(request: AttributeRequest, reporter: Reporter | None = None) -> list[RegionSummary]:
    """Run the whole job; OUT appears only when every region is done (completed ones are kept in OUT.partial)."""
    reporter = reporter or SilentReporter()
    settings = configure(request)
    with exclusive_output(request.output), Genome(request.fasta) as genome:
        inputs = resolve_inputs(request, genome, settings.fmt)
        plan = plan_batches(request, inputs.regions, reporter)
        model = resolve_model(request, settings, genome, plan.regions, reporter)
        if request.dry_run:
            dry_run(request, settings, genome, model, inputs, plan, reporter)
            return []
        run = open_partial(request, genome, model.metadata, plan, reporter)
        announce(request, reporter, model.loaded.info.context_length, plan, run)
        total = len(plan.regions)
        with closing(JsonLog(request.log_json, settings.device_names)) as log, \
                keeping_partial(run.store, run.resumed, total, reporter):
            summaries = compute(request, settings, genome, model, inputs.options, run, total, reporter, log)
            made = {**provenance(request, genome, run.identity, settings.device_names, settings.started), "finished": now()}
            write_output(request, settings.fmt, run.store, model.metadata, made, genome.chrom_sizes, total)
    return summaries
