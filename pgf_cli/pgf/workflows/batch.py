"""One batch of `pgf attribute`: regions -> engine -> scores -> one batch file of the partial output.

A batch is consecutive regions of equal length computed in one engine call,
or one region computed in context-sized windows (`--window`), which is
streamed: each group of windows is read from the FASTA, computed and written
into the batch file's datasets before the next, so memory does not grow with
the region's length (a whole chromosome).
"""

from __future__ import annotations

import ctypes
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from pgf.errors import GenomeError, PgfUserError
from pgf.io.genome import Genome
from pgf.io.onehot import InvalidSequenceError, one_hot
from pgf.io.batch_file import RegionStream
from pgf.io.partial import PartialStore
from pgf.io.regions import Region
from pgf.io.tracks import AttributionTrack, bases_sha256, dataset_options
from pgf.models.targets import Target
from pgf.workflows.common import RegionSummary, peak_memory
from pgf.workflows.methods import score_gradient
from pgf.workflows.interpret import MethodOptions, compute_method
from pgf.workflows.windows import window_spans

AUTO_BATCH_POSITIONS = 2**18  # the pgf engine batches equal-length regions up to this many positions
STREAM_CHUNK_ROWS = 2**14  # HDF5 chunk rows of the datasets a windowed region is streamed into


def release_freed_memory() -> None:
    """Give freed heap memory back to the OS (glibc keeps it otherwise, and the process's peak creeps up
    with every group of windows of a long region); a no-op elsewhere."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else False
        except OSError:
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


def batch_size(requested: int | None, engine: str) -> int:
    """--batch-size, or 0 for the pgf engine (as many equal-length regions as fit 2**18 positions)."""
    if requested is not None:
        if requested < 1:
            raise PgfUserError("--batch-size must be a positive number of regions")
        return requested
    return 0 if engine == "pgf" else 1


def make_batches(regions: list[Region], size: int, windowed: bool) -> list[list[Region]]:
    """Consecutive regions of equal length, grouped (size 0: up to 2**18 positions, 64 regions).

    With windows every region is its own batch. The list depends only on the
    regions and options, so a resumed run forms the same batches.
    """
    if windowed:
        return [[region] for region in regions]
    batches: list[list[Region]] = []
    for region in regions:
        limit = size or max(1, min(64, AUTO_BATCH_POSITIONS // max(len(region), 1)))
        current = batches[-1] if batches else None
        if current and len(current[0]) == len(region) and len(current) < limit:
            current.append(region)
        else:
            batches.append([region])
    return batches


def encode(genome: Genome, region: Region, within: Region | None = None) -> np.ndarray:
    """One-hot of `region`; a bad sequence character is reported with the file and region."""
    sequence = genome.fetch(region)
    try:
        return one_hot(sequence)
    except InvalidSequenceError as exc:
        shown = within or region
        raise GenomeError(
            f"{genome.path}: invalid sequence character {exc.character!r} at "
            f"{region.chrom}:{region.start + exc.offset + 1:,} ({exc.count} invalid characters in {shown}); "
            "expected A, C, G, T or IUPAC codes"
        ) from None


BASES_CHUNK = 1 << 20  # positions encoded at a time to digest a region's bases


def region_bases_sha256(genome: Genome, region: Region) -> str:
    """`bases_sha256` of the bases `region` has in `genome` now (encoded as a batch encodes them), a
    megabase at a time."""
    return bases_sha256(encode(genome, Region(region.chrom, start, min(start + BASES_CHUNK, region.end)), region)
                        for start in range(region.start, region.end, BASES_CHUNK))


@dataclass
class BatchComputer:
    """Computes batches and writes each into `store` (used by the main process and by device workers)."""

    genome: Genome
    engine: object
    model: torch.nn.Module
    target: Target
    method: str
    device: torch.device
    dtype: torch.dtype
    store: PartialStore
    window: int | None = None
    stride: int | None = None
    batch_limit: int | None = None  # --batch-size (windows per engine call with --window)
    options: MethodOptions | None = None  # method settings (pgf.workflows.interpret); None: `method`'s defaults

    def run(self, index: int, regions: list[Region], progress) -> list[RegionSummary]:
        """Compute and durably store batch `index`; one summary per region."""
        began = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.window:
            values = [self._windowed(index, regions[0], progress)]
        else:
            values = self._plain(index, regions, progress)
        peak, kind = peak_memory(self.device)
        seconds = time.perf_counter() - began
        return [
            RegionSummary(region=region, seconds=seconds, peak_memory_bytes=peak, memory_kind=kind,
                          target_value=value, masked_bases=masked, batch=len(regions))
            for region, (value, masked) in zip(regions, values)
        ]

    def _plain(self, index: int, regions: list[Region], progress):
        encoded = [encode(self.genome, region) for region in regions]
        inputs = torch.from_numpy(np.stack(encoded)).to(device=self.device, dtype=self.dtype)
        options = self.options or MethodOptions(self.method)
        out = compute_method(self.engine, self.model, inputs, self.target, [r.start for r in regions], options, progress)
        tracks = [AttributionTrack(region, onehot, out.gradient[i], out.score[i], out.target_value[i], out.extras[i],
                                   out.extra_attributes[i]) for i, (region, onehot) in enumerate(zip(regions, encoded))]
        self.store.write_batch(index, tracks)
        return [(t.target_value, int(np.sum(t.onehot.sum(axis=1) == 0))) for t in tracks]

    def _windowed(self, index: int, region: Region, progress) -> tuple[float, int]:
        """Windows of one region, streamed into its group (see pgf.workflows.windows)."""
        spans = window_spans(len(region), self.window, self.stride or self.window)
        limit = self.batch_limit or max(1, min(64, AUTO_BATCH_POSITIONS // spans[0].end))
        masked = 0
        with self.store.stream(index) as batch:
            group = batch.create_region(region, {})
            group.attrs["target_value"] = float("nan")
            for key, value in self.store.attributes.items():
                group.attrs[key] = value
            values = np.empty(len(spans), dtype=np.float64)
            stream = RegionStream(group, len(region), STREAM_CHUNK_ROWS, check=batch.check)
            for first in range(0, len(spans), limit):
                chunk = spans[first : first + limit]
                onehots = [encode(self.genome, Region(region.chrom, region.start + s.start, region.start + s.end), region)
                           for s in chunk]
                inputs = torch.from_numpy(np.stack(onehots)).to(device=self.device, dtype=self.dtype)
                result = self.engine.gradient(self.model, inputs, self.target.readout([region.start + s.start for s in chunk]),
                                              lambda done, total: None)
                window_gradients = result.gradient.detach().float().cpu().numpy()
                for i, span in enumerate(chunk):
                    keep = slice(span.crop_start - span.start, span.crop_end - span.start)
                    gradient, onehot = window_gradients[i, keep], onehots[i][keep]
                    scores = score_gradient(gradient, onehot, self.method)
                    masked += int(np.sum(onehot.sum(axis=1) == 0))
                    pieces = {"gradient": gradient.astype(np.float32), "score": scores.score,
                              "onehot": onehot.astype(np.uint8), **scores.extras}
                    stream.add(pieces, scores.extra_attributes)
                    values[first + i] = float(result.target_value[i])
                del onehots, inputs, result, window_gradients
                release_freed_memory()
                progress(min(first + limit, len(spans)), len(spans))
            stream.close()
            bounds = np.array([[s.start, s.end, s.crop_start, s.crop_end] for s in spans], dtype=np.int64) + region.start
            group.create_dataset("window_target_value", data=values, **dataset_options(len(region)))
            group.create_dataset("window_bounds", data=bounds, **dataset_options(len(region)))
        return float("nan"), masked
