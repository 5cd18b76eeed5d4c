"""Hugging Face `Mamba2ForCausalLM` checkpoints: embeddings, Mamba-2 blocks, norm_f, LM head.

Block: hidden = residual + mixer(RMSNorm(hidden)), the residual kept in fp32 when
`residual_in_fp32`. Keys: `backbone.embeddings.weight` (mamba_ssm's `backbone.embedding.weight`
is accepted too, as transformers does), `backbone.layers.{i}.norm.weight`,
`backbone.layers.{i}.mixer.*` (mamba_ssm's Mamba2 names), `backbone.norm_f.weight`,
`lm_head.weight` (tied to the embeddings when `tie_word_embeddings`).

transformers' mixer has d_ssm = expand·hidden_size = num_heads·head_dim and no d_mlp branch, so a
config where num_heads·head_dim differs from expand·hidden_size is refused (transformers itself
cannot run one; a mamba_ssm checkpoint with a d_mlp branch loads through its native format). The
gated norm is per group of d_ssm / n_groups channels with `layer_norm_epsilon`.
The DNA vocabulary comes from `pgf_vocab` in config.json or `--vocab`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from pgf.engine.protocol import Scan, TiledLayer
from pgf.errors import ModelError
from pgf.models.checkpoint import load_state_strictly, read_weights
from pgf.models.hf_mamba import HFMambaLM
from pgf.models.mamba2 import Mamba2Mixer
from pgf.models.mamba_ssm_lm import dt_limit, to_residual
from pgf.models.tokens import resolve_vocabulary
from pgf.models.types import Checkpoint, register_model_type

MODEL_TYPE = "mamba2"


@dataclass(frozen=True)
class HFMamba2Config:
    """The config.json keys pgf reads (defaults as in transformers' Mamba2Config)."""

    vocab_size: int = 32768
    hidden_size: int = 4096
    num_heads: int = 128
    head_dim: int = 64
    state_size: int = 128
    n_groups: int = 8
    num_hidden_layers: int = 64
    layer_norm_epsilon: float = 1e-5
    expand: int = 2
    conv_kernel: int = 4
    use_bias: bool = False
    use_conv_bias: bool = True
    hidden_act: str = "silu"
    rms_norm: bool = True
    time_step_limit: tuple = (0.0, math.inf)
    residual_in_fp32: bool = True
    tie_word_embeddings: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> "HFMamba2Config":
        """The config, or a ValueError naming the field pgf does not understand."""
        names = cls.__dataclass_fields__
        config = cls(**{k: v for k, v in data.items() if k in names})
        if config.hidden_act != "silu":
            raise ValueError(f"hidden_act {config.hidden_act!r} is not supported (only 'silu')")
        if config.rms_norm is not True:
            raise ValueError(f"rms_norm {config.rms_norm!r} is not supported (transformers' Mamba2 always applies its gated norm)")
        d_ssm, d_inner = config.num_heads * config.head_dim, int(config.expand * config.hidden_size)
        if d_ssm != d_inner:
            raise ValueError(f"num_heads·head_dim ({d_ssm}) differs from expand·hidden_size ({d_inner}): a d_mlp branch, "
                             "which transformers' Mamba2 does not have (refused)")
        return replace(config, time_step_limit=dt_limit(config.time_step_limit, "time_step_limit"))

    def mixer(self) -> Mamba2Mixer:
        return Mamba2Mixer(
            self.hidden_size, d_state=self.state_size, d_conv=self.conv_kernel, expand=self.expand,
            headdim=self.head_dim, ngroups=self.n_groups, dt_limit=self.time_step_limit,
            bias=self.use_bias, conv_bias=self.use_conv_bias, norm_eps=self.layer_norm_epsilon,
        )


class HFMamba2Block(nn.Module):
    def __init__(self, config: HFMamba2Config):
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.mixer = config.mixer()

    def tiled(self) -> TiledLayer:
        """hidden' = residual + mixer(RMSNorm(hidden))."""
        norm = self.norm
        return TiledLayer([Scan(self.mixer, prepare=lambda x: norm(x.to(norm.weight.dtype)))],
                          skip=to_residual(self.residual_in_fp32))


class HFMamba2LM(HFMambaLM):
    """Causal Mamba-2 language model on one-hot DNA: outputs {"logits": (b, L, vocab)}; the layout of
    `HFMambaLM` with Mamba-2 blocks."""

    block_type = HFMamba2Block


@register_model_type(MODEL_TYPE)
def load_hf_mamba2(directory: Path, config_data: dict, vocab: str | None = None) -> Checkpoint:
    """A Hugging Face Mamba2ForCausalLM checkpoint; its DNA vocabulary from --vocab or pgf_vocab."""
    try:
        config = HFMamba2Config.from_dict(config_data)
        vocabulary = resolve_vocabulary(directory, config_data, vocab)
        model = HFMamba2LM(config, vocabulary)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{directory}/config.json: {exc}") from None
    vocabulary.check(config.vocab_size, str(directory))
    state = read_weights(directory)
    if "backbone.embedding.weight" in state and "backbone.embeddings.weight" not in state:
        state["backbone.embeddings.weight"] = state.pop("backbone.embedding.weight")
    load_state_strictly(model, state, model.tied_parameter_names(), str(directory))
    architecture = (
        f"Hugging Face Mamba2ForCausalLM (causal, d_model {config.hidden_size}, {config.num_hidden_layers} layers, "
        f"vocabulary {vocabulary.to_string()})"
    )
    return Checkpoint(model, architecture, None)
