"""pgf's own model format: a (Bi)Mamba stack with a per-position regression head.

onehot (b, L, 4) -> embedding -> n_layer [add, RMSNorm, mixer] blocks
-> add, norm_f -> linear head -> {"track": (b, L, channels)}.

The embedding is affine, `onehot @ W.T + b`: base k embeds as W[:, k] + b and
an N (all-zero one-hot row) as b, its own token embedding. This equals
`onehot @ E[ACGT] + (1 - sum(onehot)) * E[N]`, so d f / d onehot is defined
everywhere; a zero embedding for N would put RMSNorm at its 1/sqrt(eps)
singularity and swamp the gradient.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from pgf.engine.protocol import Scan, TiledLayer
from pgf.errors import ModelError
from pgf.models.base import SequenceModel
from pgf.models.checkpoint import load_state_strictly, read_weights
from pgf.models.mamba import BiMambaMixer, MambaMixer, pair_combine
from pgf.models.types import Checkpoint, register_model_type

MODEL_TYPE = "pgf-track-ssm"


@dataclass(frozen=True)
class TrackSSMConfig:
    """config.json of a pgf-track-ssm checkpoint (key `model_type` = "pgf-track-ssm")."""

    d_model: int = 16
    n_layer: int = 2
    d_state: int = 8
    d_conv: int = 4
    expand: int = 2
    bidirectional: bool = True
    bidirectional_strategy: str = "add"
    bidirectional_weight_tie: bool = True
    norm_epsilon: float = 1e-5
    channels: tuple[str, ...] = ("signal",)
    context_length: int | None = None

    @classmethod
    def from_dict(cls, data: dict) -> "TrackSSMConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"model_type"})
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        values = {k: v for k, v in data.items() if k in known}
        if "channels" in values:
            values["channels"] = tuple(values["channels"])
        return cls(**values)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channels"] = list(self.channels)
        return {"model_type": MODEL_TYPE, **data}


class TrackBlock(nn.Module):
    """Mamba block without MLP: with the summed stream x = h + residual,
    x' = x + mixer(RMSNorm(x))."""

    def __init__(self, config: TrackSSMConfig):
        super().__init__()
        mixer_kwargs = dict(d_state=config.d_state, d_conv=config.d_conv, expand=config.expand)
        self.bidirectional = config.bidirectional
        if config.bidirectional:
            self.mixer = BiMambaMixer(
                config.d_model,
                strategy=config.bidirectional_strategy,
                weight_tie=config.bidirectional_weight_tie,
                **mixer_kwargs,
            )
        else:
            self.mixer = MambaMixer(config.d_model, **mixer_kwargs)
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_epsilon)

    def tiled(self) -> TiledLayer:
        if not self.bidirectional:
            return TiledLayer([Scan(self.mixer, prepare=self.norm)])
        scans = self.mixer.scans(prepare=self.norm)
        return TiledLayer(scans, join=pair_combine(self.mixer, len(scans)))


class TrackSSM(SequenceModel):
    """pgf-track-ssm: see the module docstring."""

    def __init__(self, config: TrackSSMConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Linear(4, config.d_model, bias=True)  # bias = the N embedding
        self.layers = nn.ModuleList(TrackBlock(config) for _ in range(config.n_layer))
        self.norm_f = nn.RMSNorm(config.d_model, eps=config.norm_epsilon)
        self.track_head = nn.Linear(config.d_model, len(config.channels))
        self.output_channels = {"track": list(config.channels)}
        self.default_target = "sum"

    def tied_parameter_names(self) -> dict[str, str]:
        """Alias -> source of parameters stored once in a checkpoint."""
        tied = {}
        for index, layer in enumerate(self.layers):
            if layer.bidirectional:
                prefix = f"layers.{index}.mixer."
                tied.update({prefix + a: prefix + s for a, s in layer.mixer.tied_parameter_names().items()})
        return tied

    def embed(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.embedding(onehot)

    def tiled_layers(self) -> list[TiledLayer]:
        return [layer.tiled() for layer in self.layers]

    def head(self, stream: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"track": self.track_head(self.norm_f(stream))}


@register_model_type(MODEL_TYPE)
def load_track_ssm(directory: Path, config_data: dict, vocab: str | None = None) -> Checkpoint:
    """A pgf-track-ssm checkpoint (config.json + weights)."""
    try:
        config = TrackSSMConfig.from_dict(config_data)
        model = TrackSSM(config)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{directory}/config.json: {exc}") from None
    load_state_strictly(model, read_weights(directory), model.tied_parameter_names(), str(directory))
    return Checkpoint(model, describe(config), config.context_length)


def describe(config: TrackSSMConfig) -> str:
    """One line: the architecture of a pgf-track-ssm model."""
    kind = "bi" if config.bidirectional else "causal "
    return f"{MODEL_TYPE} ({kind}Mamba, d_model {config.d_model}, {config.n_layer} layers)"
