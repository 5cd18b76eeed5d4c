"""What the rest of pgf needs from a model, whatever its architecture or format.

A `SequenceModel` takes a one-hot batch (b, L, 4) (columns A C G T, all-zero
rows for N) as a float tensor, so that d f / d onehot is defined, and returns
a dict of named per-position outputs, each (b, L, channels). Targets (what to
differentiate) are defined on those outputs in `pgf.models.targets`.

Every model is written as pointwise `embed`, a list of `TiledLayer`s
(directional scans between pointwise maps) and a pointwise `head`; its forward
is their composition (the engine's tile protocol, `pgf.engine.protocol`), which is what lets engines
sweep it tile by tile.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from pgf.engine.protocol import TiledLayer, whole_forward
from pgf.models.tokens import DnaVocabulary


@dataclass(frozen=True)
class ModelInfo:
    """Identity and facts of a loaded model, shown to users and stored in outputs."""

    model_id: str
    architecture: str
    checksum: str  # sha256 of the parameters (see pgf.models.checksum)
    trained: bool
    n_parameters: int
    context_length: int | None  # trained context in bp, None when not applicable
    note: str = ""
    revision: str = ""  # the Hub commit sha of a model loaded by id ("" for a local one)


class SequenceModel(nn.Module, ABC):
    """Base class of every model pgf runs.

    Subclasses set `output_channels` (output name -> channel names, the first
    output being the default) and `default_target` (a target spec string), and
    implement `embed`, `tiled_layers` and `head`.
    """

    output_channels: dict[str, list[str]]
    default_target: str = "sum"
    # language models: "causal" or "masked" (enables the `loglik` target), with
    # the vocabulary that says which token each base is
    lm_kind: str | None = None
    vocabulary: "DnaVocabulary | None" = None

    @abstractmethod
    def embed(self, onehot: torch.Tensor) -> torch.Tensor:
        """Pointwise: one-hot (b, L, 4) -> the stream entering the first layer (b, L, width)."""

    @abstractmethod
    def tiled_layers(self) -> list["TiledLayer"]:
        """The layers as directional scans between pointwise maps, first to last."""

    @abstractmethod
    def head(self, stream: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pointwise: the last layer's output stream -> named outputs (b, L, channels)."""

    def forward(self, onehot: torch.Tensor) -> dict[str, torch.Tensor]:
        """Map a one-hot batch (b, L, 4) to named outputs, each (b, L, channels)."""
        return whole_forward(self, onehot)

    @property
    def default_output(self) -> str:
        return next(iter(self.output_channels))
