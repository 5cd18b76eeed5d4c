"""Transitional: the previous forward-sweep entry point (removed once call sites use `PgfEngine.forward`)."""

from __future__ import annotations

import torch

from pgf.engine.tiled import PgfEngine


def forward_sweep(model, onehot: torch.Tensor, output, tile: int | None = None,
                  reference: torch.Tensor | None = None) -> torch.Tensor:
    return PgfEngine(tile).forward(model, onehot, output, reference)
