"""The tiled engine (`--engine pgf`): forward, tangent and adjoint sweeps over tiles (exact, memory-bounded)."""

from __future__ import annotations

import torch

from pgf.engine.adjoint import adjoint_gradient
from pgf.engine.base import Engine, GradientResult, check_readout
from pgf.engine.protocol import Backend, Readout, SweepModel, is_causal
from pgf.engine.streaming import PRIMAL, Dual, TangentMode, stream_causal, sweep_layers
from pgf.engine.tile_primitives import Progress, ProgressCounter, default_tile, frozen, tile_spans

# On CPU, rows x tile positions that one sweep step works on: beyond this a step's temporaries
# spill out of cache (100 x 2,048-bp regions at once: 27 kbp/s in 1.5 GB; 8 rows at a time:
# 43 kbp/s in 0.5 GB). A GPU takes the whole batch at once.
CPU_STEP_POSITIONS = 16_384


def row_groups(onehot: torch.Tensor, tile: int) -> list[tuple[int, int]]:
    """[start, end) row ranges of a batch swept one after another (one range: the whole batch)."""
    batch, length = onehot.shape[0], onehot.shape[1]
    rows = max(1, CPU_STEP_POSITIONS // max(1, min(length, tile)))
    if onehot.device.type != "cpu" or batch <= rows:
        return [(0, batch)]
    return [(start, min(start + rows, batch)) for start in range(0, batch, rows)]


def _joined(parts: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=dim)


def _group_progress(progress: Progress | None, index: int, count: int) -> Progress | None:
    """One group's progress (done, total) as part of `count` equal groups."""
    if progress is None:
        return None
    return lambda done, total: progress(index * total + done, count * total)


class TiledEngine(Engine):
    """Sweeps `tile` positions at a time (None: the device's, `TILE_BY_DEVICE`); `offload` keeps saved layer inputs on host memory
    (True), never (False), or when they would take over half the free GPU memory (None);
    the mixers run the `backend` kernels ("reference", "cpu", "triton", or "auto", which None means);
    `segment`: the gradient's layers per recompute segment (`pgf.engine.keep_plan`; None: chosen
    from the free memory, every layer kept when they fit)."""

    name = "pgf"

    def __init__(self, tile: int | None = None, offload: bool | None = None, backend: Backend = None,
                 segment: int | None = None):
        self.tile = tile
        self.offload = offload
        self.backend = backend
        self.segment = segment

    def _counter(self, model: SweepModel, tiles: list, progress: Progress | None) -> ProgressCounter:
        layers = model.tiled_layers()
        steps = len(tiles) if is_causal(layers) else len(tiles) * (1 + sum(len(layer.scans) for layer in layers))
        return ProgressCounter(progress, steps)

    def _sweep(self, model: SweepModel, onehot, readout: Readout, reference: torch.Tensor, mode, progress):
        tiles = tile_spans(reference.shape[1], self.tile_for(reference.device))
        walk = stream_causal if is_causal(model.tiled_layers()) else sweep_layers
        return walk(model, onehot, readout, reference, tiles, mode, self._counter(model, tiles, progress), self.backend)

    def tile_for(self, device: torch.device) -> int:
        """Positions per tile on `device`: the engine's, or the device kind's default."""
        return self.tile or default_tile(device)

    def plan(self, onehot: torch.Tensor) -> list[tuple[int, int]]:
        """The row groups this engine sweeps a batch in, one after another."""
        return row_groups(onehot, self.tile_for(onehot.device))

    def forward(self, model, onehot, readout, reference=None, progress=None) -> torch.Tensor:
        readout = check_readout(readout)
        reference = onehot if reference is None else reference
        groups = self.plan(onehot)
        with torch.no_grad():
            return _joined([
                self._sweep(model, onehot[s:e], readout.rows(s, e), reference[s:e], PRIMAL,
                            _group_progress(progress, i, len(groups)))
                for i, (s, e) in enumerate(groups)
            ])

    def tangent(self, model, onehot, directions, readout, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
        readout = check_readout(readout)
        groups = self.plan(onehot)
        primals, tangents = [], []
        with frozen(model):
            for i, (s, e) in enumerate(groups):
                dual = Dual(onehot[s:e], directions[:, s:e].to(onehot.dtype))
                result = self._sweep(model, dual, readout.rows(s, e), onehot[s:e],
                                     TangentMode(directions.shape[0]), _group_progress(progress, i, len(groups)))
                primals.append(result.primal.detach())
                tangents.append(result.tangent.detach())
        return _joined(primals), _joined(tangents, dim=1)

    def gradient(self, model, onehot, readout, progress=None) -> GradientResult:
        readout = check_readout(readout)
        tiles = tile_spans(onehot.shape[1], self.tile_for(onehot.device))
        groups = self.plan(onehot)
        results = [
            adjoint_gradient(model, onehot[s:e], readout.rows(s, e), tiles, self.offload,
                             _group_progress(progress, i, len(groups)), self.backend, self.segment)
            for i, (s, e) in enumerate(groups)
        ]
        if len(results) == 1:
            return results[0]
        return GradientResult(
            gradient=torch.cat([r.gradient for r in results]),
            target_value=torch.cat([r.target_value for r in results]),
            offloaded=any(r.offloaded for r in results),
            recomputed_layers=max(r.recomputed_layers for r in results),
        )
