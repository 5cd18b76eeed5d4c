"""The PGF engine: forward, tangent and adjoint sweeps over tiles (exact, memory-bounded)."""

from __future__ import annotations

import torch

from pgf.engine.adjoint import GradientResult, adjoint_gradient
from pgf.engine.base import Engine
from pgf.engine.protocol import Readout, SweepModel, is_causal
from pgf.engine.streaming import PRIMAL, Dual, TangentMode, stream_causal, sweep_layers
from pgf.engine.tiles import DEFAULT_TILE, Progress, ProgressCounter, frozen, tile_spans


class PgfEngine(Engine):
    """Sweeps `tile` positions at a time; `offload` keeps saved layer inputs on host memory
    (True), never (False), or when they would take over half the free GPU memory (None)."""

    name = "pgf"

    def __init__(self, tile: int | None = None, offload: bool | None = None):
        self.tile = tile or DEFAULT_TILE
        self.offload = offload

    def _counter(self, model: SweepModel, tiles: list, progress: Progress | None) -> ProgressCounter:
        layers = model.tiled_layers()
        steps = len(tiles) if is_causal(layers) else len(tiles) * (1 + sum(len(layer.scans) for layer in layers))
        return ProgressCounter(progress, steps)

    def _sweep(self, model: SweepModel, onehot, readout: Readout, reference: torch.Tensor, mode, progress):
        tiles = tile_spans(reference.shape[1], self.tile)
        walk = stream_causal if is_causal(model.tiled_layers()) else sweep_layers
        return walk(model, onehot, readout, reference, tiles, mode, self._counter(model, tiles, progress))

    def forward(self, model, onehot, readout, reference=None, progress=None) -> torch.Tensor:
        reference = onehot if reference is None else reference
        with torch.no_grad():
            return self._sweep(model, onehot, readout, reference, PRIMAL, progress)

    def tangent(self, model, onehot, directions, readout, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
        with frozen(model):
            dual = Dual(onehot, directions.to(onehot.dtype))
            result = self._sweep(model, dual, readout, onehot, TangentMode(directions.shape[0]), progress)
        return result.primal.detach(), result.tangent.detach()

    def gradient(self, model, onehot, readout, progress=None) -> GradientResult:
        tiles = tile_spans(onehot.shape[1], self.tile)
        return adjoint_gradient(model, onehot, readout, tiles, self.offload, progress)
