"""Tiles and the small primitives every sweep shares: spans, one output allocator,
one progress counter, frozen parameters."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch

# positions per tile when none is asked for, by device kind: the one table of sweep tile sizes.
# cpu: measured (bench/throughput.py: 2,048 keeps a tile's temporaries in cache on 2 cores);
# cuda: a starting point, not yet measured (bench/gpu_checks.sh runs the throughput benchmark
# that will set it): wide enough to fill a GPU's programs, small against its memory.
TILE_BY_DEVICE = {"cpu": 2048, "cuda": 16384}
DEFAULT_TILE = TILE_BY_DEVICE["cpu"]
TILE_HELP = ", ".join(f"{size:,} on {kind.upper()}" for kind, size in TILE_BY_DEVICE.items())  # for --tile's help
Tiles = list[tuple[int, int]]
# progress(done, total): units are sweep steps (a scan over one tile, a pointwise map over one tile)
Progress = Callable[[int, int], None]


def default_tile(device: torch.device) -> int:
    """The tile size for `device`'s kind (`TILE_BY_DEVICE`; unlisted kinds take the CPU's)."""
    return TILE_BY_DEVICE.get(device.type, DEFAULT_TILE)


def tile_spans(length: int, tile: int) -> Tiles:
    """Consecutive [start, end) tiles covering [0, length) (one empty tile for length 0)."""
    return [(s, min(s + tile, length)) for s in range(0, length, tile)] or [(0, 0)]


def sweep_order(reverse: bool, tiles: Tiles) -> Tiles:
    """The tiles in the order a scan visits them: right to left for anti-causal scans."""
    return list(reversed(tiles)) if reverse else list(tiles)


class TileOutput:
    """A whole-length result filled tile by tile, allocated from the first tile written.

    `lead` leading dimensions come before the length dimension (1: (b, L, ...);
    2: (k, b, L, ...) for tangents).
    """

    def __init__(self, length: int, lead: int = 1):
        self.length, self.lead = length, lead
        self.value: torch.Tensor | None = None

    def write(self, start: int, end: int, tile: torch.Tensor) -> None:
        if self.value is None:
            shape = (*tile.shape[: self.lead], self.length, *tile.shape[self.lead + 1 :])
            self.value = tile.new_empty(shape)
        self.value[(slice(None),) * self.lead + (slice(start, end),)] = tile

    def add(self, start: int, end: int, tile: torch.Tensor, channels: tuple[int, int] | None = None) -> None:
        """Accumulate into an already written span (only into `channels` (lo, hi) of the last dim when given)."""
        index = (slice(None),) * self.lead + (slice(start, end),)
        if channels is not None:
            index += (Ellipsis, slice(*channels))
        self.value[index] += tile


def map_tiles(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tiles: Tiles) -> torch.Tensor:
    """A position-wise function applied tile by tile into one preallocated output (no concatenation copy)."""
    result = TileOutput(x.shape[1])
    for s, e in tiles:
        result.write(s, e, function(x[:, s:e]))
    return result.value


class ProgressCounter:
    """Counts sweep steps and reports them as (done, total)."""

    def __init__(self, progress: Progress | None, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.progress:
            self.progress(self.done, self.total)


@contextmanager
def frozen(model: torch.nn.Module):
    """No parameter gradients while sweeping (only input gradients and tangents are wanted)."""
    flags = [p.requires_grad for p in model.parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(model.parameters(), flags):
            parameter.requires_grad_(flag)
