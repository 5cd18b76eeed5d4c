"""Transitional: the previous tangent-engine entry point (removed once call sites use `PgfEngine.tangent`)."""

from __future__ import annotations

from pgf.engine.protocol import Readout as OutputFunction
from pgf.engine.tiled import PgfEngine

__all__ = ["OutputFunction", "TangentEngine"]


class TangentEngine:
    name = "pgf-tangent"

    def __init__(self, tile: int | None = None):
        self.engine = PgfEngine(tile)

    def jvp(self, model, onehot, directions, output, progress=None):
        return self.engine.tangent(model, onehot, directions, output, progress)
