"""Transitional: engines with the previous gradient signature (model, onehot, target, region_starts, progress)."""

from __future__ import annotations

from pgf.engine.autograd import AutogradEngine as _Autograd
from pgf.engine.tiled import PgfEngine


def _legacy(cls):
    class Legacy(cls):
        def gradient(self, model, onehot, target, region_starts=None, progress=None):
            if callable(target) and region_starts is None:
                return super().gradient(model, onehot, target, progress)
            readout = lambda outputs, x, offset: target.contributions(outputs, x, region_starts, offset)  # noqa: E731
            return super().gradient(model, onehot, readout, progress)

    Legacy.__name__ = cls.__name__
    return Legacy


AdjointEngine = _legacy(PgfEngine)
AutogradEngine = _legacy(_Autograd)
