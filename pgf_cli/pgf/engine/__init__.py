"""Exact sweeps over tiles: forward, tangent (J·v) and adjoint (vᵀJ) of a model's readout.

`get_engine("pgf" | "autograd")` gives an `Engine` (`TiledEngine` | `AutogradEngine`) with `forward`, `tangent` and
`gradient`; models implement the tile protocol of `pgf.engine.protocol`. Every
tiled sweep is tested for equality with plain autograd.
"""

from pgf.engine.autograd import AutogradEngine
from pgf.engine.base import Engine, GradientResult
from pgf.engine.protocol import (
    SUM, Combine, Mixer, MixerDefaults, PositionReadout, Readout, Scan, ScanState, SweepModel, TiledLayer,
)
from pgf.engine.registry import DEFAULT_ENGINE, ENGINES, get_engine
from pgf.engine.tile_primitives import DEFAULT_TILE, TILE_BY_DEVICE, TILE_HELP, Progress
from pgf.engine.tiled_engine import TiledEngine

__all__ = [
    "DEFAULT_ENGINE", "DEFAULT_TILE", "TILE_BY_DEVICE", "TILE_HELP", "ENGINES", "SUM", "AutogradEngine", "Combine", "Engine", "GradientResult",
    "Mixer", "MixerDefaults", "PositionReadout", "Progress", "Readout", "Scan", "ScanState", "SweepModel",
    "TiledEngine", "TiledLayer", "get_engine",
]
