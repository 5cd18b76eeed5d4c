"""The engine interface the workflows call; new engines (PGF adjoint) plug in here."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pgf.models.base import SequenceModel
from pgf.models.targets import Target

# progress(done, total): units are engine-defined (steps, tiles, layers)
Progress = Callable[[int, int], None]


def tile_spans(length: int, tile: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) tiles covering [0, length) (one empty tile for length 0)."""
    return [(s, min(s + tile, length)) for s in range(0, length, tile)] or [(0, 0)]


@dataclass
class GradientResult:
    gradient: torch.Tensor  # (b, L, 4): d target / d onehot, same dtype as the input
    target_value: torch.Tensor  # (b,): the target f of each row


class Engine(ABC):
    """Computes the gradient of a target with respect to the one-hot input."""

    name: str

    @abstractmethod
    def gradient(
        self,
        model: SequenceModel,
        onehot: torch.Tensor,
        target: Target,
        region_starts: Sequence[int],
        progress: Progress | None = None,
    ) -> GradientResult:
        """d f / d onehot for a batch (b, L, 4) of float one-hot rows.

        `region_starts` holds the 0-based genome coordinate of each row's
        first base (targets defined at genome positions need it).
        """
