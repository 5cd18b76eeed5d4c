"""Exact sweeps over tiles: forward, tangent (J·v) and adjoint (vᵀJ) of a model's readout.

`get_engine("pgf" | "autograd")` gives an `Engine` with `forward`, `tangent` and
`gradient`; models implement the tile protocol of `pgf.engine.protocol`. Every
tiled sweep is tested for equality with plain autograd.
"""

from pgf.engine.adjoint import GradientResult
from pgf.engine.autograd import AutogradEngine
from pgf.engine.base import Engine
from pgf.engine.protocol import Mixer, Readout, Scan, ScanState, SweepModel, TiledLayer
from pgf.engine.registry import DEFAULT_ENGINE, ENGINES, get_engine
from pgf.engine.tiled import PgfEngine
from pgf.engine.tiles import DEFAULT_TILE, Progress

__all__ = [
    "DEFAULT_ENGINE", "DEFAULT_TILE", "ENGINES", "AutogradEngine", "Engine", "GradientResult", "Mixer",
    "PgfEngine", "Progress", "Readout", "Scan", "ScanState", "SweepModel", "TiledLayer", "get_engine",
]
