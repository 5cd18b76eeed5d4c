"""Hugging Face `MambaForCausalLM` checkpoints: embeddings, Mamba blocks, norm_f, LM head.

Block: hidden = residual + mixer(RMSNorm(hidden)), the residual kept in fp32
when `residual_in_fp32`. State-dict names are the Hugging Face ones
(`backbone.embeddings.weight`, `backbone.layers.{i}.norm.weight`,
`backbone.layers.{i}.mixer.*`, `backbone.norm_f.weight`, `lm_head.weight`,
the last tied to the embeddings unless `tie_word_embeddings` is false).
These vocabularies are not DNA-specific, so which token each base is comes
from the config key `pgf_vocab` ({"A": id, ..., "N": id}) or `--vocab`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pgf.engine.protocol import Scan, TiledLayer
from pgf.errors import ModelError
from pgf.models.base import SequenceModel
from pgf.models.checkpoint import load_state_strictly, read_weights
from pgf.models.mamba import MambaMixer
from pgf.models.tokens import DnaVocabulary, resolve_vocabulary
from pgf.models.types import Checkpoint, register_model_type

MODEL_TYPE = "mamba"


@dataclass(frozen=True)
class HFMambaConfig:
    """The config.json keys pgf reads (defaults as in transformers' MambaConfig)."""

    vocab_size: int = 50280
    hidden_size: int = 768
    state_size: int = 16
    num_hidden_layers: int = 32
    layer_norm_epsilon: float = 1e-5
    expand: int = 2
    conv_kernel: int = 4
    use_bias: bool = False
    use_conv_bias: bool = True
    hidden_act: str = "silu"
    time_step_rank: int | str = "auto"
    residual_in_fp32: bool = True
    tie_word_embeddings: bool = True

    @classmethod
    def from_dict(cls, data: dict) -> "HFMambaConfig":
        names = cls.__dataclass_fields__
        config = cls(**{k: v for k, v in data.items() if k in names})
        if config.hidden_act != "silu":
            raise ValueError(f"hidden_act {config.hidden_act!r} is not supported (only 'silu')")
        return config


class HFMambaBlock(nn.Module):
    def __init__(self, config: HFMambaConfig):
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.mixer = MambaMixer(
            config.hidden_size,
            d_state=config.state_size,
            d_conv=config.conv_kernel,
            expand=config.expand,
            dt_rank=config.time_step_rank,
            conv_bias=config.use_conv_bias,
            bias=config.use_bias,
        )

    def skip(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.residual_in_fp32:
            return hidden.to(torch.promote_types(hidden.dtype, torch.float32))
        return hidden

    def tiled(self) -> TiledLayer:
        """hidden' = residual + mixer(RMSNorm(hidden))."""
        return TiledLayer([Scan(self.mixer, prepare=self.norm)], skip=self.skip)


class HFMambaBackbone(nn.Module):
    """Embeddings, `block_type(config)` layers and norm_f (a Mamba-1 or Mamba-2 block)."""

    def __init__(self, config, block_type: type[nn.Module]):
        super().__init__()
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(block_type(config) for _ in range(config.num_hidden_layers))
        self.norm_f = nn.RMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)


class HFMambaLM(SequenceModel):
    """Causal Mamba language model on one-hot DNA: outputs {"logits": (b, L, vocab)}.

    Subclasses change `block_type` (transformers' Mamba2ForCausalLM has the same layout)."""

    lm_kind = "causal"
    default_target = "loglik"
    block_type: type[nn.Module] = HFMambaBlock

    def __init__(self, config: HFMambaConfig, vocabulary: DnaVocabulary):
        super().__init__()
        self.config = config
        self.vocabulary = vocabulary
        self.backbone = HFMambaBackbone(config, self.block_type)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight
        names = [str(i) for i in range(config.vocab_size)]
        for base, token in zip("ACGT", vocabulary.base_ids):
            names[token] = base
        self.output_channels = {"logits": names}

    def tied_parameter_names(self) -> dict[str, str]:
        return {"lm_head.weight": "backbone.embeddings.weight"} if self.config.tie_word_embeddings else {}

    def embed(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.vocabulary.embed(onehot, self.backbone.embeddings.weight)

    def tiled_layers(self) -> list[TiledLayer]:
        return [layer.tiled() for layer in self.backbone.layers]

    def head(self, stream: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.backbone.norm_f(stream.to(self.backbone.norm_f.weight.dtype))
        return {"logits": self.lm_head(hidden)}


@register_model_type(MODEL_TYPE)
def load_hf_mamba(directory: Path, config_data: dict, vocab: str | None = None) -> Checkpoint:
    """A Hugging Face MambaForCausalLM checkpoint; its DNA vocabulary from --vocab or pgf_vocab."""
    vocabulary = resolve_vocabulary(directory, config_data, vocab)
    try:
        config = HFMambaConfig.from_dict(config_data)
        model = HFMambaLM(config, vocabulary)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{directory}/config.json: {exc}") from None
    vocabulary.check(config.vocab_size, str(directory))
    load_state_strictly(model, read_weights(directory), model.tied_parameter_names(), str(directory))
    architecture = (
        f"Hugging Face MambaForCausalLM (causal, d_model {config.hidden_size}, "
        f"{config.num_hidden_layers} layers, vocabulary {vocabulary.to_string()})"
    )
    return Checkpoint(model, architecture, None)
