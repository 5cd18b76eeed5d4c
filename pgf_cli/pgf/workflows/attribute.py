"""`pgf attribute`: regions of a FASTA -> model -> engine -> per-base scores -> track file."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import pgf
from pgf.engine import DEFAULT_ENGINE, get_engine
from pgf.errors import GenomeError, OutputError, PgfUserError, TargetError
from pgf.io.atomic import check_output_path
from pgf.io.genome import Genome
from pgf.io.onehot import InvalidSequenceError, one_hot
from pgf.io.regions import Region, parse_region, read_bed
from pgf.io.tracks import AttributionTrack, RunMetadata
from pgf.io.writers import check_regions_fit_format, open_writer, resolve_format
from pgf.models.registry import BUILTIN
from pgf.models.targets import Target, parse_target
from pgf.workflows.common import (
    RegionSummary,
    Reporter,
    SilentReporter,
    load_model_for_user,
    peak_memory,
    resolve_device,
    resolve_dtype,
)
from pgf.workflows.kernels import DEFAULT_KERNELS, use_kernels
from pgf.workflows.methods import DEFAULT_METHOD, METHODS, score_gradient
from pgf.workflows.windows import window_spans

AUTO_BATCH_POSITIONS = 2**18  # the pgf engine batches equal-length regions up to this many positions


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


def _encode(genome: Genome, region: Region) -> np.ndarray:
    """One-hot of `region`; a bad sequence character is reported with the file and region."""
    sequence = genome.fetch(region)
    try:
        return one_hot(sequence)
    except InvalidSequenceError as exc:
        raise GenomeError(
            f"{genome.path}: invalid sequence character {exc.character!r} at "
            f"{region.chrom}:{region.start + exc.offset + 1:,} ({exc.count} invalid characters in {region}); "
            "expected A, C, G, T or IUPAC codes"
        ) from None


GradientAndValue = tuple[np.ndarray, float, dict[str, np.ndarray]]


def _batch_size(request: AttributeRequest) -> int:
    """--batch-size, or for the pgf engine as many equal-length regions as fit 2**18 positions."""
    if request.batch_size is not None:
        if request.batch_size < 1:
            raise PgfUserError("--batch-size must be a positive number of regions")
        return request.batch_size
    return 0 if request.engine == "pgf" else 1  # 0: decided per length by _batches


def _batches(regions: list[Region], batch_size: int) -> list[list[Region]]:
    """Consecutive regions of equal length, grouped (batch_size 0: up to 2**18 positions, 64 regions)."""
    batches: list[list[Region]] = []
    for region in regions:
        limit = batch_size or max(1, min(64, AUTO_BATCH_POSITIONS // max(len(region), 1)))
        current = batches[-1] if batches else None
        if current and len(current[0]) == len(region) and len(current) < limit:
            current.append(region)
        else:
            batches.append([region])
    return batches


def _batch_gradients(engine, model, encoded, regions, target, device, dtype, progress) -> list[GradientAndValue]:
    """One engine call for a batch of equal-length regions."""
    inputs = torch.from_numpy(np.stack(encoded)).to(device=device, dtype=dtype)
    result = engine.gradient(model, inputs, target.readout([region.start for region in regions]), progress)
    gradients = result.gradient.detach().float().cpu().numpy()
    return [(gradients[i], float(result.target_value[i]), {}) for i in range(len(regions))]


def _windowed(engine, model, onehot, region, target, request, device, dtype, progress) -> GradientAndValue:
    """Gradients of context-sized windows, each kept on its centre crop (see pgf.workflows.windows)."""
    spans = window_spans(len(region), request.window, request.stride or request.window)
    limit = request.batch_size or max(1, min(64, AUTO_BATCH_POSITIONS // spans[0].end))
    gradient = np.empty((len(region), 4), dtype=np.float32)
    values = np.empty(len(spans), dtype=np.float64)
    for first in range(0, len(spans), limit):
        chunk = spans[first : first + limit]
        inputs = torch.from_numpy(np.stack([onehot[s.start : s.end] for s in chunk])).to(device=device, dtype=dtype)
        result = engine.gradient(model, inputs, target.readout([region.start + s.start for s in chunk]), progress)
        window_gradients = result.gradient.detach().float().cpu().numpy()
        for i, span in enumerate(chunk):
            gradient[span.crop_start : span.crop_end] = window_gradients[i, span.crop_start - span.start : span.crop_end - span.start]
            values[first + i] = float(result.target_value[i])
    bounds = np.array([[s.start, s.end, s.crop_start, s.crop_end] for s in spans], dtype=np.int64) + region.start
    extras = {"window_target_value": values, "window_bounds": bounds}
    return gradient, float("nan"), extras


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


def run_attribute(request: AttributeRequest, reporter: Reporter | None = None) -> list[RegionSummary]:
    """Run the whole job; the output appears only if every region succeeded."""
    reporter = reporter or SilentReporter()
    if request.method not in METHODS:
        raise PgfUserError(f"unknown method {request.method!r}; choose one of: {', '.join(METHODS)}")
    dtype = resolve_dtype(request.dtype)
    if request.tile is not None and request.tile < 1:
        raise PgfUserError("--tile must be a positive number of positions")
    _check_window_options(request)
    fmt = resolve_format(request.output, request.fmt)
    check_output_path(request.output, request.force)
    _check_output_is_not_an_input(request)
    engine = get_engine(request.engine, request.tile, offload=request.offload)
    device = resolve_device(request.device)

    with Genome(request.fasta) as genome, use_kernels(request.kernels, device):
        regions = resolve_regions(genome, request.regions, request.bed)
        check_regions_fit_format(regions, fmt)
        loaded = load_model_for_user(request.model, device, dtype, request.vocab, reporter)
        target = _resolve_target(request, loaded.model, genome, regions)
        metadata = RunMetadata(
            method=request.method,
            target=target.spec,
            model_id=loaded.info.model_id,
            model_checksum=loaded.info.checksum,
            model_trained=loaded.info.trained,
            engine=engine.name,
            dtype=request.dtype,
            tool_version=pgf.__version__,
        )
        if request.window is None:
            _say_one_pass(reporter, loaded.info.context_length, regions)
        batches = [[region] for region in regions] if request.window else _batches(regions, _batch_size(request))
        summaries = []
        with open_writer(request.output, fmt, metadata, genome.chrom_sizes, force=request.force) as writer:
            done = 0
            for batch in batches:
                progress = reporter.region_started(batch, done, len(regions))
                done += len(batch)
                began = time.perf_counter()
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                encoded = [_encode(genome, region) for region in batch]
                if request.window:
                    results = [_windowed(engine, loaded.model, encoded[0], batch[0], target, request, device, dtype, progress)]
                else:
                    results = _batch_gradients(engine, loaded.model, encoded, batch, target, device, dtype, progress)
                for region, onehot, (gradient, target_value, extras) in zip(batch, encoded, results):
                    scores = score_gradient(gradient, onehot, request.method)
                    writer.add(
                        AttributionTrack(
                            region=region,
                            onehot=onehot,
                            gradient=gradient,
                            score=scores.score,
                            target_value=target_value,
                            extras={**scores.extras, **extras},
                            extra_attributes=scores.extra_attributes,
                        )
                    )
                peak, kind = peak_memory(device)
                seconds = time.perf_counter() - began
                for region, onehot, (_, target_value, _) in zip(batch, encoded, results):
                    summary = RegionSummary(
                        region=region,
                        seconds=seconds,
                        peak_memory_bytes=peak,
                        memory_kind=kind,
                        target_value=target_value,
                        masked_bases=int(np.sum(onehot.sum(axis=1) == 0)),
                        batch=len(batch),
                    )
                    summaries.append(summary)
                    reporter.region_finished(summary)
    return summaries
