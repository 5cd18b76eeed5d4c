"""`pgf effect`: how every output position of a region changes with a variant (or an impulse).

linear: J·v from the tangent engine, v = onehot(alt) - onehot(ref) at the
        variant (or a unit impulse), many directions sharing one primal sweep.
exact:  output(alternative sequence) - output(reference sequence), two forward sweeps.

The output tracked is, for language models, the log-probability of the
*reference* base at each position (masked models: of base l given the whole
sequence; causal models: of base l+1 given bases up to l, stored at l), and
for track models the head's channels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import pgf
from pgf.engine import PositionReadout, Readout, TiledEngine
from pgf.errors import OutputError, PgfUserError
from pgf.io.atomic import check_output_path
from pgf.io.effect_writers import EffectResult, Perturbation, write_effect_hdf5, write_effect_summary, write_effect_track
from pgf.io.genome import Genome
from pgf.io.onehot import BASES, one_hot
from pgf.io.regions import Region, parse_region
from pgf.io.tracks import RunMetadata
from pgf.io.variants import check_variants, parse_variant, read_vcf
from pgf.io.writers import resolve_format
from pgf.models.base import SequenceModel
from pgf.models.registry import BUILTIN
from pgf.models.targets import parse_target
from pgf.workflows.common import Reporter, SilentReporter, load_model_for_user, resolve_device, resolve_dtype
from pgf.workflows.kernels import DEFAULT_KERNELS, checked_kernels

__all__ = ["EffectRequest", "EffectResult", "MODES", "Perturbation", "output_function", "run_effect"]

MODES = ("linear", "exact", "both")


@dataclass
class EffectRequest:
    fasta: Path
    region: str
    output: Path
    variants: list[str] = field(default_factory=list)
    vcf: Path | None = None
    impulses: list[str] = field(default_factory=list)
    model: str = BUILTIN
    vocab: str | None = None
    mode: str = "linear"
    channel: str | None = None
    summary: Path | None = None
    track: Path | None = None
    track_variant: str | None = None
    skip_mismatch: bool = False
    tile: int | None = None
    batch_size: int = 32
    device: str = "auto"
    dtype: str = "float32"
    force: bool = False
    kernels: str = DEFAULT_KERNELS


def output_function(model: SequenceModel) -> tuple[Readout, list[str], str]:
    """What `pgf effect` tracks for this model, with channel names and a description."""
    if model.lm_kind is not None:
        target = parse_target("loglik", model)
        what = "log p(reference base l | sequence)" if model.lm_kind == "masked" else "log p(reference base l+1 | bases <= l), at l"

        def loglik(outputs, onehot, offset):
            return target.readout([0])(outputs, onehot, offset).unsqueeze(-1)

        return PositionReadout(loglik), ["log_p_ref"], what
    name = model.default_output

    def track(outputs, onehot, offset):
        return outputs[name]

    return PositionReadout(track), list(model.output_channels[name]), f"model output {name!r}"


def _perturbations(request: EffectRequest, genome: Genome, region: Region, sequence: str, reporter: Reporter) -> list[Perturbation]:
    variants = [parse_variant(text) for text in request.variants]
    if request.vcf is not None:
        variants += read_vcf(request.vcf)
    perturbations = []
    if variants:
        check = check_variants(variants, region, genome.chrom_sizes, sequence, request.skip_mismatch)
        if check.outside:
            shown = ", ".join(str(v) for v in check.outside[:5]) + (" ..." if len(check.outside) > 5 else "")
            reporter.warn(f"{len(check.outside)} variant(s) outside region {region} were not computed: {shown}")
        for variant, base in check.mismatched:
            reporter.warn(f"skipped {variant}: REF {variant.ref} but the FASTA has {base!r}")
        if check.duplicates:
            reporter.warn(f"{len(check.duplicates)} duplicate variant(s) computed once: " + ", ".join(map(str, check.duplicates[:5])))
        perturbations += [
            Perturbation(v.name, v.offset, BASES.index(v.ref), BASES.index(v.alt), v) for v in check.usable
        ]
    for text in request.impulses:
        position_text, _, base = text.partition(":")
        cleaned = position_text.replace(",", "")
        if not cleaned.isdigit() or not (region.start < int(cleaned) <= region.end):
            raise PgfUserError(f"impulse {text!r}: expected POS[:BASE] with POS a 1-based position inside {region}")
        offset = int(cleaned) - 1
        base = (base or sequence[offset - region.start]).upper()
        if base not in BASES:
            raise PgfUserError(f"impulse {text!r}: base {base!r} is not A, C, G or T (give POS:BASE at an N)")
        perturbations.append(Perturbation(f"impulse:{region.chrom}:{offset + 1}:{base}", offset, None, BASES.index(base)))
    if not perturbations:
        raise PgfUserError("no variant to compute: give --variant, --vcf or --impulse (with at least one inside the region)")
    return perturbations


def _direction(perturbation: Perturbation, region: Region, L: int) -> np.ndarray:
    v = np.zeros((L, 4), dtype=np.float64)
    i = perturbation.position - region.start
    v[i, perturbation.alt_index] += 1.0
    if perturbation.ref_index is not None:
        v[i, perturbation.ref_index] -= 1.0
    return v


def run_effect(request: EffectRequest, reporter: Reporter | None = None) -> list[EffectResult]:
    """Compute every perturbation's effect track; write HDF5, the TSV summary and an optional track."""
    reporter = reporter or SilentReporter()
    if request.mode not in MODES:
        raise PgfUserError(f"unknown mode {request.mode!r}; choose one of: {', '.join(MODES)}")
    if request.batch_size < 1:
        raise PgfUserError("--batch-size must be positive")
    if resolve_format(request.output) != "h5":
        raise OutputError("the effect output (-o) is HDF5: name it .h5 or .hdf5")
    summary_path = request.summary or request.output.with_suffix(".tsv")
    outputs = [request.output, summary_path] + ([request.track] if request.track else [])
    for path in outputs:
        check_output_path(path, request.force)
    track_format = resolve_format(request.track) if request.track else None
    if track_format == "h5":
        raise OutputError("--track writes one variant's track as bedGraph or bigWig (.bedgraph/.bg/.bw/.bigwig)")
    device = resolve_device(request.device)
    dtype = resolve_dtype(request.dtype)
    backend = checked_kernels(request.kernels, device)

    with Genome(request.fasta) as genome:
        region = parse_region(request.region, genome.chrom_sizes)
        sequence = genome.fetch(region)
        perturbations = _perturbations(request, genome, region, sequence, reporter)
        loaded = load_model_for_user(request.model, device, dtype, request.vocab, reporter)
        output, channels, description = output_function(loaded.model)
        channel = _channel_index(request.channel, channels)
        track_index = _track_index(request, perturbations)
        onehot = one_hot(sequence)
        reference = torch.from_numpy(onehot).to(device=device, dtype=dtype).unsqueeze(0)
        L = len(region)
        began = time.perf_counter()
        progress = reporter.region_started([region], 0, 1)
        linear = exact = None
        engine = TiledEngine(tile=request.tile, backend=backend)
        baseline = None
        if request.mode in ("linear", "both"):
            linear = []
            for first in range(0, len(perturbations), request.batch_size):
                chunk = perturbations[first : first + request.batch_size]
                directions = torch.from_numpy(np.stack([_direction(p, region, L) for p in chunk])).to(device=device, dtype=dtype)
                baseline, tangents = engine.tangent(loaded.model, reference, directions.unsqueeze(1), output, progress)
                linear += list(tangents[:, 0].float().cpu().numpy())
        if request.mode in ("exact", "both"):
            exact = []
            baseline = engine.forward(loaded.model, reference, output)
            for first in range(0, len(perturbations), request.batch_size):
                chunk = perturbations[first : first + request.batch_size]
                altered = torch.from_numpy(np.stack([onehot + _direction(p, region, L) for p in chunk])).to(device=device, dtype=dtype)
                values = engine.forward(loaded.model, altered, output, reference=reference.expand(len(chunk), -1, -1))
                exact += list((values - baseline).float().cpu().numpy())
        results = [
            EffectResult(p, None if linear is None else linear[i], None if exact is None else exact[i])
            for i, p in enumerate(perturbations)
        ]
        seconds = time.perf_counter() - began
        metadata = {
            "region": str(region), "chrom": region.chrom, "start": region.start, "end": region.end,
            "mode": request.mode, "output": description, "channels": ",".join(channels),
            "model_id": loaded.info.model_id, "model_checksum": loaded.info.checksum, "model_revision": loaded.info.revision,
            "model_trained": loaded.info.trained, "dtype": request.dtype, "tool_version": pgf.__version__,
        }
        write_effect_hdf5(request.output, request.force, metadata, baseline[0].float().cpu().numpy(), results)
        write_effect_summary(summary_path, request.force, region, results, channel, channels)
        if request.track:
            info = loaded.info
            meta = RunMetadata("effect", description, info.model_id, info.checksum, info.trained, "pgf-tangent", request.dtype,
                               pgf.__version__, model_revision=info.revision)
            write_effect_track(
                request.track, track_format, request.force, genome.chrom_sizes, region, results[track_index], channel, channels, meta
            )
        reporter.info(
            f"{region.to_string(commas=True)}  {L:,} bp  {len(results)} perturbation(s)  {request.mode}  {seconds:.2f} s  "
            f"wrote {request.output}, {summary_path}" + (f", {request.track}" if request.track else "")
        )
    return results


def _channel_index(text: str | None, channels: list[str]) -> int:
    if text is None:
        return 0
    if text in channels:
        return channels.index(text)
    if text.isdigit() and int(text) < len(channels):
        return int(text)
    raise PgfUserError(f"unknown channel {text!r}; channels: {', '.join(channels)}")


def _track_index(request: EffectRequest, perturbations: list[Perturbation]) -> int:
    if request.track_variant is None:
        return 0
    for index, p in enumerate(perturbations):
        if request.track_variant in (p.name, p.variant.id if p.variant else None):
            return index
    raise PgfUserError(f"--track-variant {request.track_variant!r} is none of the computed variants")
