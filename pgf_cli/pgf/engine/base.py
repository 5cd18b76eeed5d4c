"""The engine interface: forward, tangent (J·v) and gradient (vᵀJ) of a model's readout, and its results."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from pgf.engine.protocol import Readout, SweepModel
from pgf.engine.tile_primitives import Progress

__all__ = ["Engine", "GradientResult", "Progress"]


@dataclass
class GradientResult:
    """What `Engine.gradient` returns."""

    gradient: torch.Tensor  # (b, L, 4): d f / d onehot, same dtype as the input
    target_value: torch.Tensor  # (b,): f of each row
    offloaded: bool = False  # whether saved layer inputs went to host memory
    recomputed_layers: int = 0  # layers run forward twice to fit memory (pgf.engine.keep_plan)


class Engine(ABC):
    """Computes a model's readout, its directional derivatives and its input gradient.

    Inputs are float one-hot batches (b, L, 4). A readout (see `pgf.engine.protocol`)
    maps the head's outputs of positions [offset, offset + T) to (b, T) or (b, T, C).
    """

    name: str

    @abstractmethod
    def forward(self, model: SweepModel, onehot: torch.Tensor, readout: Readout,
                reference: torch.Tensor | None = None, progress: Progress | None = None) -> torch.Tensor:
        """readout (b, L, ...) at `onehot`; `reference` (default `onehot`) is the input the
        readout reads to select bases (e.g. the reference allele at an alternative sequence)."""

    @abstractmethod
    def tangent(self, model: SweepModel, onehot: torch.Tensor, directions: torch.Tensor, readout: Readout,
                progress: Progress | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(readout (b, L, ...), its derivatives (k, b, L, ...) along `directions` (k, b, L, 4))."""

    @abstractmethod
    def gradient(self, model: SweepModel, onehot: torch.Tensor, readout: Readout,
                 progress: Progress | None = None) -> GradientResult:
        """d f / d onehot (b, L, 4) and f (b,), f = the readout summed over positions and channels."""


def check_readout(readout: Readout) -> Readout:
    """`readout`, or a TypeError for a plain function (which could not be cut into row groups)."""
    if not isinstance(readout, Readout):
        raise TypeError(f"an engine reads a pgf.engine.Readout (e.g. PositionReadout(function)), not {type(readout).__name__}")
    return readout
