"""`pgf attribute`: regions of a FASTA -> model -> engine -> per-base scores -> track file.

Completed batches go to a partial output (`OUT.partial/`, see pgf.io.partial)
as they finish; on success it becomes OUT. `resume` continues a partial output
of the same run; `shard` takes one part of the region list; `devices` runs one
worker process per device (pgf.workflows.devices).
"""

from __future__ import annotations

import hashlib
import json
import platform
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

import pgf
from pgf.engine import DEFAULT_ENGINE, get_engine
from pgf.errors import OutputError, PgfUserError, TargetError
from pgf.io.assemble import stored_regions, write_hdf5, write_intervals
from pgf.io.atomic import check_output_path
from pgf.io.genome import Genome
from pgf.io.partial import PartialStore, partial_path, regions_hash
from pgf.io.regions import Region, parse_region, read_bed
from pgf.io.tracks import RunMetadata, region_group_name
from pgf.io.writers import TrackLabel, check_regions_fit_format, resolve_format
from pgf.models.registry import BUILTIN
from pgf.models.targets import Target, parse_target
from pgf.workflows.batch import BatchComputer, batch_size, make_batches
from pgf.workflows.common import (
    RegionSummary,
    Reporter,
    SilentReporter,
    load_model_for_user,
    resolve_device,
    resolve_dtype,
)
from pgf.workflows.kernels import DEFAULT_KERNELS, use_kernels
from pgf.workflows.interpret import MethodOptions, check_options, effective_options, needs_compute_method, resolve_ism_region
from pgf.workflows.interpret import identity as method_identity
from pgf.workflows.methods import DEFAULT_METHOD
from pgf.workflows.shards import parse_shard, shard_batches
from pgf.workflows.windows import window_spans


@dataclass
class AttributeRequest:
    """Everything `pgf attribute` was asked to do."""

    fasta: Path
    output: Path
    regions: list[str] = field(default_factory=list)
    bed: Path | None = None
    model: str = BUILTIN
    target: str | None = None
    target_window: str | None = None
    vocab: str | None = None
    method: str = DEFAULT_METHOD
    method_options: MethodOptions | None = None  # --baseline, --steps, --ism-window, --rc-average ... (pgf.workflows.interpret)
    engine: str = DEFAULT_ENGINE
    device: str = "auto"
    tile: int | None = None
    offload: bool | None = None  # None: automatic (when layer inputs would not fit on the GPU)
    batch_size: int | None = None
    window: int | None = None
    stride: int | None = None
    dtype: str = "float32"
    fmt: str | None = None
    force: bool = False
    kernels: str = DEFAULT_KERNELS
    resume: bool = False
    shard: str | None = None  # "K/N"
    devices: str | None = None  # "cuda:0,cuda:1", "all", "cpu,cpu"
    log_json: Path | None = None
    command_line: str | None = None  # stored as provenance


def resolve_regions(genome: Genome, specs: list[str], bed: Path | None) -> list[Region]:
    """The --region strings then the BED regions, checked against the genome; at least one."""
    regions = [parse_region(spec, genome.chrom_sizes) for spec in specs]
    if bed is not None:
        regions += read_bed(bed, genome.chrom_sizes)
    if not regions:
        raise PgfUserError("no region given: use --region CHROM:START-END (repeatable) or --regions FILE.bed")
    return regions


def _check_output_is_not_an_input(request: AttributeRequest) -> None:
    """Refuse an output path that names an input (even with --force it would replace it)."""
    inputs = {
        "the FASTA": request.fasta,
        "the FASTA index": Path(f"{request.fasta}.fai"),
        "the bgzip index": Path(f"{request.fasta}.gzi"),
        "the BED file": request.bed,
    }
    output = Path(request.output).resolve()
    for what, path in inputs.items():
        if path is not None and Path(path).resolve() == output:
            raise OutputError(f"output {request.output} is {what}; choose another output path")


def _resolve_target(request: AttributeRequest, model, genome: Genome, regions: list[Region]) -> Target:
    """Parse --target (and --target-window) and check it can be evaluated on every region."""
    target = parse_target(request.target, model)
    if request.target_window is not None:
        window = parse_region(request.target_window, genome.chrom_sizes)
        target = target.with_window(window.chrom, window.start, window.end)
    if target.kind == "position" and len({region.chrom for region in regions}) > 1:
        raise TargetError("a position:P target names no sequence; give regions on one sequence only")
    for region in regions:
        target.check_region(region.start, region.end, str(region), chrom=region.chrom)
    return target


def _check_window_options(request: AttributeRequest) -> None:
    if request.window is None:
        if request.stride is not None:
            raise PgfUserError("--stride needs --window")
        return
    window_spans(request.window + 1, request.window, request.stride or request.window)  # validates the pair
    if request.target_window is not None:
        raise PgfUserError("--target-window and --window exclude each other: each window has its own target")
    if request.target is not None and request.target.strip().startswith("position"):
        raise PgfUserError("a position:P target names one position; it cannot be computed per window (drop --window)")


def _say_one_pass(reporter: Reporter, context_length: int | None, regions: list[Region]) -> None:
    longest = max(len(region) for region in regions)
    if context_length and longest > context_length:
        reporter.info(
            f"note: regions up to {longest:,} bp exceed the model's trained context ({context_length:,} bp); "
            "computing each in one pass (the recurrence is defined for any length). "
            f"--window {context_length} --stride S computes context-sized windows instead."
        )




class RunStopped(KeyboardInterrupt):
    """Interrupted (SIGINT/SIGTERM) after `saved` of `total` regions were stored in `partial`."""

    def __init__(self, signum: int, saved: int, total: int, partial: Path):
        super().__init__(f"stopped after {saved} of {total} regions")
        self.signum, self.saved, self.total, self.partial = signum, saved, total, partial


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def _identity(request: AttributeRequest, metadata: RunMetadata, regions: list[Region]) -> dict[str, object]:
    """What makes two runs compute the same partial output (refused on --resume when it differs)."""
    return {
        "tool_version": metadata.tool_version,
        "fasta_index_sha256": _file_sha256(Path(f"{request.fasta}.fai")),
        "model_id": metadata.model_id,
        "model_checksum": metadata.model_checksum,
        "target": metadata.target,
        "method": metadata.method,
        "method_options": method_identity(effective_options(request.method, request.method_options)),
        "dtype": metadata.dtype,
        "engine": metadata.engine,
        "kernels": request.kernels,
        "tile": request.tile,
        "window": request.window,
        "stride": request.stride,
        "regions": len(regions),
        "regions_sha256": regions_hash(regions),
    }


def _provenance(request: AttributeRequest, genome: Genome, identity: dict, device: str, started: str) -> dict[str, object]:
    return {
        "command_line": request.command_line or "",
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "host": platform.node(),
        "device": device,
        "started": started,
        "fasta": str(request.fasta),
        "fasta_index_sha256": identity["fasta_index_sha256"],
        "regions_sha256": identity["regions_sha256"],
        "shard": request.shard or "",
        "chrom_names": list(genome.chrom_sizes),
        "chrom_lengths": list(genome.chrom_sizes.values()),
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class JsonLog:
    """--log-json: one JSON line per finished region, appended and flushed as it ends."""

    def __init__(self, path: Path | None, device: str):
        self.handle = open(path, "a") if path is not None else None
        self.device = device

    def write(self, summary: RegionSummary, device: str | None = None) -> None:
        if self.handle is None:
            return
        region = summary.region
        record = {
            "region": region.to_string(), "name": region.name, "bp": len(region), "seconds": round(summary.seconds, 6),
            "bp_per_s": round(len(region) * summary.batch / summary.seconds, 1) if summary.seconds > 0 else None,
            "batch": summary.batch, "peak_memory_bytes": summary.peak_memory_bytes, "memory_kind": summary.memory_kind,
            "device": device or self.device, "target_value": None if summary.target_value != summary.target_value else summary.target_value,
            "finished": _now(),
        }
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _prepare(request: AttributeRequest) -> str:
    """Checks that need no FASTA or model; returns the output format."""
    options = effective_options(request.method, request.method_options)
    check_options(options)
    if request.window is not None and needs_compute_method(options):
        raise PgfUserError(f"--window is not supported with --method {request.method} or --rc-average; compute the regions in one pass")
    resolve_dtype(request.dtype)
    if request.tile is not None and request.tile < 1:
        raise PgfUserError("--tile must be a positive number of positions")
    _check_window_options(request)
    batch_size(request.batch_size, request.engine)
    if request.shard is not None:
        parse_shard(request.shard)
    fmt = resolve_format(request.output, request.fmt)
    check_output_path(request.output, request.force)
    _check_output_is_not_an_input(request)
    return fmt


def run_attribute(request: AttributeRequest, reporter: Reporter | None = None) -> list[RegionSummary]:
    """Run the whole job; OUT appears only when every region is done (completed ones are kept in OUT.partial)."""
    from pgf.workflows.devices import parse_devices, run_on_devices  # a sibling that imports this module

    reporter = reporter or SilentReporter()
    fmt = _prepare(request)
    dtype = resolve_dtype(request.dtype)
    devices = parse_devices(request.devices) if request.devices else None
    engine = get_engine(request.engine, request.tile, offload=request.offload)
    device = torch.device("cpu") if devices else resolve_device(request.device)
    started = _now()

    if devices:  # the workers compute; the parent only checks that every device can run the kernels
        for worker_device in devices:
            use_kernels(request.kernels, worker_device)
    with Genome(request.fasta) as genome, (nullcontext() if devices else use_kernels(request.kernels, device)):
        regions = resolve_regions(genome, request.regions, request.bed)
        check_regions_fit_format(regions, fmt)
        options = resolve_ism_region(effective_options(request.method, request.method_options), genome.chrom_sizes,
                                     [region.chrom for region in regions])
        # batches of the whole list: a shard, a resumed run and every worker compute these same batches
        batches = list(enumerate(make_batches(regions, batch_size(request.batch_size, request.engine), bool(request.window))))
        if request.shard is not None:
            k, n = parse_shard(request.shard)
            count, batches = len(regions), shard_batches([batch for _, batch in batches], k, n)
            regions = [region for _, batch in batches for region in batch]
            if not regions:
                reporter.warn(f"shard {k}/{n} holds no region ({count} region{'s' if count != 1 else ''} in {n} shards); writing an empty output")
        loaded = load_model_for_user(request.model, device, dtype, request.vocab, reporter)
        target = _resolve_target(request, loaded.model, genome, regions)
        metadata = RunMetadata(
            method=request.method, target=target.spec, model_id=loaded.info.model_id, model_checksum=loaded.info.checksum,
            model_trained=loaded.info.trained, engine=engine.name, dtype=request.dtype, tool_version=pgf.__version__,
        )
        identity = _identity(request, metadata, regions)
        store, resumed = PartialStore.open(request.output, identity, metadata.attributes(), request.resume, request.force)
        done = store.completed() if resumed else set()
        todo = [(i, [r for r in batch if region_group_name(r) not in done]) for i, batch in batches]
        todo = [(i, batch) for i, batch in todo if batch]
        skipped = len(regions) - sum(len(batch) for _, batch in todo)
        if resumed:
            reporter.info(f"resuming {store.folder}: {skipped} of {len(regions)} regions already done (skipped), {len(regions) - skipped} to compute")
        elif request.resume:
            reporter.info(f"nothing to resume ({store.folder} does not exist); starting")
        if request.window is None and todo:
            _say_one_pass(reporter, loaded.info.context_length, [r for _, batch in todo for r in batch])
        job_started = getattr(reporter, "job_started", None)
        if job_started is not None:
            job_started(sum(len(r) for r in regions), sum(len(r) for r in regions) - sum(len(r) for _, b in todo for r in b), len(regions), skipped)
        device_names = ",".join(str(d) for d in devices) if devices else str(device)
        log = JsonLog(request.log_json, device_names)
        try:
            if devices:
                summaries = run_on_devices(request, devices, store, todo, len(regions), reporter, log)
            else:
                computer = BatchComputer(genome, engine, loaded.model, target, request.method, device, dtype, store,
                                         request.window, request.stride, request.batch_size, options=options)
                summaries = []
                finished = skipped
                for index, batch in todo:
                    progress = reporter.region_started(batch, finished, len(regions))
                    for summary in computer.run(index, batch, progress):
                        summaries.append(summary)
                        log.write(summary)
                        reporter.region_finished(summary)
                    finished += len(batch)
            provenance = {**_provenance(request, genome, identity, device_names, started), "finished": _now()}
            _finish(request, fmt, store, metadata, provenance, genome.chrom_sizes, len(regions))
        except KeyboardInterrupt as exc:
            saved = len(store.completed())
            if saved == 0 and not resumed:
                store.remove()
                raise
            raise RunStopped(getattr(exc, "signum", signal.SIGINT), saved, len(regions), store.folder) from None
        except BaseException:
            saved = len(store.completed()) if store.folder.is_dir() else 0
            if saved == 0 and not resumed:
                store.remove()
            elif saved:
                reporter.warn(f"{saved} of {len(regions)} regions are kept in {store.folder}; "
                              "fix the cause and rerun the same command with --resume to finish")
            raise
        finally:
            log.close()
    return summaries


def _finish(request, fmt, store: PartialStore, metadata: RunMetadata, provenance, chrom_sizes, expected: int) -> None:
    """The partial output becomes OUT (HDF5 copied group by group; bedGraph/bigWig converted); then it is removed."""
    stored = stored_regions(store.batch_files())
    if len(stored) != expected:
        raise RuntimeError(f"{store.folder} holds {len(stored)} regions, {expected} expected")
    root = {**metadata.attributes(), **provenance}
    if fmt == "h5":
        write_hdf5(Path(request.output), stored, root, request.force)
    else:
        label = TrackLabel(
            f"pgf {metadata.method}",
            f"pgf {metadata.tool_version} {metadata.method} of {metadata.target}, model {metadata.model_id}",
        )
        comments = [f"{key}: {value}" for key, value in root.items()
                    if key not in ("chrom_names", "chrom_lengths") and value not in ("", None)]
        write_intervals(Path(request.output), fmt, stored, chrom_sizes, label, comments, request.force)
    store.remove()
