"""mamba_ssm's native LM checkpoints (`MambaLMHeadModel`: config.json = MambaConfig + pytorch_model.bin).

Block i (as mamba_ssm's `Block`): residual = hidden + residual; hidden = mixer(norm(residual));
with `d_intermediate > 0` also residual = hidden + residual; hidden = mlp(norm2(residual)), the
GatedMLP fc2(y ⊙ silu(gate)) with (y, gate) = fc1(·). The model ends with norm_f(hidden + residual).

In the tile protocol the stream between layers is the sum hidden + residual *before* the block's
MLP, so a layer is x' = x + mixer(norm(x)). The GatedMLP is pointwise in position and comes after
the mixer's residual add, so it is folded forward: block i's `post` (x -> x + mlp(norm2(x))) is
the first map of layer i+1's skip and scan prepare, and of the head for the last block
(`mlp_post`, also used by Caduceus). Layers in `attn_layer_idx` (attention) are refused.

These configs carry no `model_type`; the registry sends a config.json with `d_model`, `n_layer`
and `ssm_cfg` and no `model_type` here. The vocabulary is not DNA-specific: which token each
base is comes from `pgf_vocab` in config.json or `--vocab`, as for Hugging Face Mamba.
This module also reads `ssm_cfg` (the mixer's arguments) for Caduceus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pgf.engine.protocol import Pointwise, Scan, TiledLayer, identity
from pgf.errors import ModelError
from pgf.models.base import SequenceModel
from pgf.models.checkpoint import load_state_strictly, read_weights
from pgf.models.mamba import MambaMixer
from pgf.models.mamba2 import Mamba2Mixer
from pgf.models.tokens import DnaVocabulary, resolve_vocabulary
from pgf.models.types import Checkpoint, register_model_type

NATIVE_MODEL_TYPE = "mamba_ssm"
MIXERS = {"Mamba1": MambaMixer, "Mamba2": Mamba2Mixer}
# the mixer arguments that change what it computes, by kind of value
_MIXER_ARGUMENTS = {
    "Mamba1": {"d_state": "int", "d_conv": "int", "expand": "int", "dt_rank": "rank", "conv_bias": "bool",
               "bias": "bool"},
    "Mamba2": {"d_state": "int", "d_conv": "int", "expand": "number", "headdim": "int", "d_ssm": "int?",
               "ngroups": "int", "rmsnorm": "bool", "norm_before_gate": "bool", "dt_limit": "limit",
               "bias": "bool", "conv_bias": "bool", "D_has_hdim": "bool"},
}
# initialisation, kernel and parallelism settings: they do not change the function
_MIXER_IGNORED = {
    "Mamba1": {"dt_min", "dt_max", "dt_init", "dt_scale", "dt_init_floor", "use_fast_path", "layer_idx"},
    "Mamba2": {"conv_init", "A_init_range", "dt_min", "dt_max", "dt_init_floor", "chunk_size", "use_mem_eff_path",
               "layer_idx", "process_group", "sequence_parallel"},
}


def json_float(value) -> float | None:
    """A number from config.json: a JSON number (Infinity included) or transformers 5's
    {"__float__": "Infinity"}; None for anything else."""
    if isinstance(value, dict) and set(value) == {"__float__"}:
        value = value["__float__"]
        try:
            return float(value) if isinstance(value, str) else None
        except ValueError:
            return None
    return float(value) if isinstance(value, Real) and not isinstance(value, bool) else None


def dt_limit(value, where: str) -> tuple[float, float]:
    """A (low, high) clamp of dt from config.json, 0 <= low < high; a ValueError naming `where` otherwise."""
    bounds = [json_float(v) for v in value] if isinstance(value, (list, tuple)) and len(value) == 2 else [None]
    if None in bounds or not 0 <= bounds[0] < bounds[1]:
        raise ValueError(f"{where} = {value!r} is not understood")
    return bounds[0], bounds[1]


def _checked(name: str, value, kind: str, where: str):
    """`value` (a dt limit as a float pair) if it is of `kind`, else a ValueError naming `where name`."""
    if kind == "limit":
        return dt_limit(value, f"{where} {name}")
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool) and value > 0,
        "int?": value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0),
        "number": isinstance(value, Real) and not isinstance(value, bool) and value > 0,
        "bool": isinstance(value, bool),
        "rank": value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0),
    }[kind]
    if not ok:
        raise ValueError(f"{where} {name} = {value!r} is not understood")
    return value


def mixer_from_ssm_cfg(ssm_cfg: dict | None, layer: str | None = None, where: str = "ssm_cfg") -> tuple[type, dict]:
    """(mixer class, its keyword arguments) from a mamba_ssm `ssm_cfg`; the kind of mixer from `layer`,
    else from its "layer" entry (default "Mamba1"). A ValueError names what is not understood."""
    if not isinstance(ssm_cfg or {}, dict):
        raise ValueError(f"{where} must be an object, not {ssm_cfg!r}")
    cfg = dict(ssm_cfg or {})
    named = cfg.pop("layer", None)
    layer = layer or named or "Mamba1"
    if layer not in MIXERS:
        raise ValueError(f"{where} layer {layer!r} is not understood (pgf knows 'Mamba1' and 'Mamba2')")
    arguments = _MIXER_ARGUMENTS[layer]
    kwargs = {}
    for key, value in cfg.items():
        if key in arguments:
            kwargs[key] = _checked(key, value, arguments[key], where)
        elif key not in _MIXER_IGNORED[layer]:
            raise ValueError(f"{where} key {key!r} is not understood by pgf's {layer} mixer")
    return MIXERS[layer], kwargs


def mlp_width(hidden_features: int | None, d_model: int, multiple_of: int = 128) -> int:
    """GatedMLP's hidden width: the requested one (default 8·d_model/3) rounded up to `multiple_of`."""
    hidden = int(8 * d_model / 3) if hidden_features is None else hidden_features
    return -(-hidden // multiple_of) * multiple_of


class GatedMLP(nn.Module):
    """mamba_ssm's GatedMLP: fc2(y ⊙ silu(gate)) with (y, gate) = fc1(x) (`mlp.fc1`, `mlp.fc2`)."""

    def __init__(self, d_model: int, hidden: int, bias: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(d_model, 2 * hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, gate = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(y * F.silu(gate))


def to_residual(residual_in_fp32: bool) -> Pointwise:
    """The residual stream's cast: to at least fp32 when `residual_in_fp32`."""
    if not residual_in_fp32:
        return identity
    return lambda x: x.to(torch.promote_types(x.dtype, torch.float32))


def mlp_post(norm2: nn.Module | None, mlp: nn.Module | None, residual_in_fp32: bool) -> Pointwise:
    """x -> residual(x) + mlp(norm2(x)): what a block's GatedMLP does to the stream (identity without one)."""
    if mlp is None:
        return identity
    residual = to_residual(residual_in_fp32)
    return lambda x: residual(x) + mlp(norm2(x.to(norm2.weight.dtype))).to(x.dtype)


def then(first: Pointwise, second: Callable) -> Pointwise:
    """second ∘ first (just `second` when first is the identity)."""
    return second if first is identity else (lambda x: second(first(x)))


@dataclass(frozen=True)
class NativeConfig:
    """mamba_ssm's MambaConfig (its keys and defaults), the mixer read from `ssm_cfg`."""

    d_model: int = 2560
    d_intermediate: int = 0
    n_layer: int = 64
    vocab_size: int = 50277
    ssm_cfg: dict = field(default_factory=dict)
    attn_layer_idx: list = field(default_factory=list)
    attn_cfg: dict = field(default_factory=dict)
    rms_norm: bool = True
    residual_in_fp32: bool = True
    fused_add_norm: bool = True
    pad_vocab_size_multiple: int = 8
    tie_embeddings: bool = True
    norm_epsilon: float = 1e-5

    IGNORED = ("model_type", "pgf_vocab", "architectures", "_name_or_path", "torch_dtype", "transformers_version",
               "initializer_cfg")

    @classmethod
    def from_dict(cls, data: dict) -> "NativeConfig":
        """The config, or a ValueError naming the first field pgf does not understand."""
        names = cls.__dataclass_fields__
        for key in data:
            if key not in names and key not in cls.IGNORED:
                raise ValueError(f"config key {key!r} is not understood (a mamba_ssm MambaConfig has no such field)")
        config = cls(**{k: v for k, v in data.items() if k in names})
        if config.attn_layer_idx:
            raise ValueError(f"layers {list(config.attn_layer_idx)} (attn_layer_idx) are attention layers: "
                             "not a selective SSM, which is what pgf's engines compute exactly")
        for key in ("d_model", "n_layer", "vocab_size", "pad_vocab_size_multiple"):
            _checked(key, getattr(config, key), "int", "config")
        if not isinstance(config.d_intermediate, int) or config.d_intermediate < 0:
            raise ValueError(f"config d_intermediate = {config.d_intermediate!r} is not understood")
        config.mixer()  # refuse an ssm_cfg pgf does not understand now
        return config

    def mixer(self) -> tuple[type, dict]:
        return mixer_from_ssm_cfg(self.ssm_cfg)

    @property
    def padded_vocab_size(self) -> int:
        multiple = self.pad_vocab_size_multiple
        return -(-self.vocab_size // multiple) * multiple


class NativeBlock(nn.Module):
    """`backbone.layers.{i}`: norm, mixer, and norm2 + mlp when d_intermediate > 0."""

    def __init__(self, config: NativeConfig):
        super().__init__()
        mixer_type, kwargs = config.mixer()
        make_norm = nn.RMSNorm if config.rms_norm else nn.LayerNorm
        self.norm = make_norm(config.d_model, eps=config.norm_epsilon)
        self.mixer = mixer_type(config.d_model, **kwargs)
        self.residual_in_fp32 = config.residual_in_fp32
        if config.d_intermediate > 0:
            self.norm2 = make_norm(config.d_model, eps=config.norm_epsilon)
            self.mlp = GatedMLP(config.d_model, mlp_width(config.d_intermediate, config.d_model))
        else:
            self.norm2 = self.mlp = None

    def post(self) -> Pointwise:
        return mlp_post(self.norm2, self.mlp, self.residual_in_fp32)

    def tiled(self, pre: Pointwise = identity) -> TiledLayer:
        """x' = residual(pre(x)) + mixer(norm(pre(x))), `pre` being the previous block's MLP."""
        norm = self.norm
        prepare = then(pre, lambda x: norm(x.to(norm.weight.dtype)))
        return TiledLayer([Scan(self.mixer, prepare=prepare)], skip=then(pre, to_residual(self.residual_in_fp32)))


class NativeBackbone(nn.Module):
    def __init__(self, config: NativeConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.padded_vocab_size, config.d_model)
        self.layers = nn.ModuleList(NativeBlock(config) for _ in range(config.n_layer))
        self.norm_f = (nn.RMSNorm if config.rms_norm else nn.LayerNorm)(config.d_model, eps=config.norm_epsilon)


class MambaSsmLM(SequenceModel):
    """mamba_ssm's MambaLMHeadModel on one-hot DNA (causal): outputs {"logits": (b, L, padded vocab)}."""

    lm_kind = "causal"
    default_target = "loglik"

    def __init__(self, config: NativeConfig, vocabulary: DnaVocabulary):
        super().__init__()
        self.config = config
        self.vocabulary = vocabulary
        self.backbone = NativeBackbone(config)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight
        names = [str(i) for i in range(config.padded_vocab_size)]
        for base, token in zip("ACGT", vocabulary.base_ids):
            names[token] = base
        self.output_channels = {"logits": names}

    def tied_parameter_names(self) -> dict[str, str]:
        return {"lm_head.weight": "backbone.embedding.weight"} if self.config.tie_embeddings else {}

    def embed(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.vocabulary.embed(onehot, self.backbone.embedding.weight)

    def tiled_layers(self) -> list[TiledLayer]:
        layers, pre = [], identity
        for block in self.backbone.layers:
            layers.append(block.tiled(pre))
            pre = block.post()
        return layers

    def head(self, stream: torch.Tensor) -> dict[str, torch.Tensor]:
        stream = self.backbone.layers[-1].post()(stream)  # the last block's MLP (folded forward)
        norm_f = self.backbone.norm_f
        return {"logits": self.lm_head(norm_f(stream.to(norm_f.weight.dtype)))}


def looks_native(config_data: dict) -> bool:
    """A config.json with no model_type that has MambaConfig's d_model, n_layer and ssm_cfg."""
    return "model_type" not in config_data and {"d_model", "n_layer", "ssm_cfg"} <= config_data.keys()


def describe_native(config: NativeConfig, vocabulary: DnaVocabulary) -> str:
    mixer_type, _ = config.mixer()
    kind = "Mamba-2" if mixer_type is Mamba2Mixer else "Mamba-1"
    mlp = f", gated MLP {mlp_width(config.d_intermediate, config.d_model)}" if config.d_intermediate else ""
    return (f"mamba_ssm MambaLMHeadModel (causal, d_model {config.d_model}, {config.n_layer} {kind} layers{mlp}, "
            f"vocabulary {vocabulary.to_string()})")


@register_model_type(NATIVE_MODEL_TYPE)
def load_mamba_ssm(directory: Path, config_data: dict, vocab: str | None = None) -> Checkpoint:
    """A mamba_ssm MambaLMHeadModel checkpoint; its DNA vocabulary from --vocab or pgf_vocab."""
    try:
        config = NativeConfig.from_dict(config_data)
        vocabulary = resolve_vocabulary(directory, config_data, vocab)
        model = MambaSsmLM(config, vocabulary)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{directory}/config.json: {exc}") from None
    vocabulary.check(config.padded_vocab_size, str(directory))
    load_state_strictly(model, read_weights(directory), model.tied_parameter_names(), str(directory))
    return Checkpoint(model, describe_native(config, vocabulary), None)

