"""Caduceus masked DNA language models: ph (post-hoc) and ps (RC-equivariant, `rcps`).

Module and parameter names mirror the published checkpoints
(`caduceus.backbone.embeddings.word_embeddings[.embedding].weight`,
`caduceus.backbone.layers.{i}.norm[.submodule].weight`,
`caduceus.backbone.layers.{i}.mixer[.submodule].mamba_{fwd,rev}.*`,
`caduceus.backbone.norm_f[.submodule].weight`, `lm_head[.lm_head].weight`,
and the `complement_map` buffers of ps models).

ps models carry a residual stream of width 2·d_model, [forward strand ‖
flip_LC(reverse-complement strand)], with flip_LC = flip over length and
channels. Published ps checkpoints were trained with `fused_add_norm: true`,
whose block add+norm takes the *second* half of the summed stream for the
first output half and the flipped *first* half for the second output half
(swapping halves every block, residual included); the final norm_f does not
swap. With `fused_add_norm: false` the halves stay in place. Both are
reproduced here, chosen by the config.

The mixers of each direction are Mamba-1 or Mamba-2 (PlantCAD2-style), as the config says (both
config layouts are read by `pgf.models.caduceus_config`); the BiMamba "add" rule, weight tying
and RC wrappers are the same for both.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from pgf.engine.protocol import Pointwise, Scan, TiledLayer, identity
from pgf.errors import ModelError
from pgf.models.base import SequenceModel
from pgf.models.caduceus_config import CaduceusConfig
from pgf.models.checkpoint import load_state_strictly, read_weights
from pgf.models.mamba import BiMambaMixer, pair_combine
from pgf.models.mamba_ssm_lm import GatedMLP, mlp_post, then
from pgf.models.tokens import CADUCEUS, PLANT_CADUCEUS, DnaVocabulary, resolve_vocabulary
from pgf.models.types import Checkpoint, register_model_type

MODEL_TYPE = "caduceus"


def flip_lc(t: torch.Tensor) -> torch.Tensor:
    """Reverse-complement a hidden tensor (b, L, C): flip length and channels."""
    return t.flip(-2, -1)


def default_vocabulary(config: CaduceusConfig) -> DnaVocabulary:
    """Caduceus ids (A7 C8 G9 T10 N11), or PlantCaduceus ids (a3 c4 g5 t6, N -> [UNK]2) for its 7-token vocabulary."""
    return PLANT_CADUCEUS if config.vocab_size == 7 else CADUCEUS


class Submodule(nn.Module):
    """Holds a module under the name `submodule`, as the published RCPS wrappers do."""

    def __init__(self, submodule: nn.Module):
        super().__init__()
        self.submodule = submodule


class RCPSEmbeddingTable(nn.Module):
    """ps embedding parameters: `embedding.weight` and the `complement_map` buffer."""

    def __init__(self, vocab_size: int, d_model: int, complement_ids: list[int]):
        super().__init__()
        self.register_buffer("complement_map", torch.tensor(complement_ids, dtype=torch.long))
        self.embedding = nn.Embedding(vocab_size, d_model)


class RCPSHead(nn.Module):
    """ps LM head parameters: `lm_head.weight` and the `complement_map` buffer."""

    def __init__(self, d_model: int, vocab_size: int, complement_ids: list[int]):
        super().__init__()
        self.register_buffer("complement_map", torch.tensor(complement_ids, dtype=torch.long))
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)


class CaduceusEmbeddings(nn.Module):
    def __init__(self, config: CaduceusConfig):
        super().__init__()
        V = config.padded_vocab_size
        if config.rcps:
            self.word_embeddings = RCPSEmbeddingTable(V, config.d_model, config.complement_ids())
        else:
            self.word_embeddings = nn.Embedding(V, config.d_model)


def _norm(config: CaduceusConfig) -> nn.Module:
    if config.rms_norm:
        return nn.RMSNorm(config.d_model, eps=config.norm_epsilon)
    return nn.LayerNorm(config.d_model, eps=config.norm_epsilon)


class CaduceusBlock(nn.Module):
    """Add + norm, then the BiMamba mixer (per strand half for ps); ph blocks may end with add +
    norm2 + a GatedMLP (`mlp_hidden`), folded into the next layer's maps (see `post`)."""

    def __init__(self, config: CaduceusConfig):
        super().__init__()
        self.config = config
        mixer_type, mixer_kwargs = config.mixer()
        mixer = BiMambaMixer(
            config.d_model,
            strategy=config.bidirectional_strategy,
            weight_tie=config.bidirectional_weight_tie,
            bidirectional=config.bidirectional,
            mixer_type=mixer_type,
            **mixer_kwargs,
        )
        rc_wrapped = config.rcps
        self.mixer = Submodule(mixer) if rc_wrapped else mixer
        norm = _norm(config)
        self.norm = Submodule(norm) if (rc_wrapped and not config.fused_add_norm) else norm
        if config.mlp_hidden:  # ph only (CaduceusConfig refuses an MLP with rcps)
            self.norm2 = _norm(config)
            self.mlp = GatedMLP(config.d_model, config.mlp_hidden, bias=config.mlp_bias)
        else:
            self.norm2 = self.mlp = None

    def post(self) -> Pointwise:
        """What the block's GatedMLP does to the summed stream: x -> residual(x) + mlp(norm2(x))."""
        return mlp_post(self.norm2, self.mlp, self.config.residual_in_fp32)

    @property
    def bimamba(self) -> BiMambaMixer:
        return self.mixer.submodule if isinstance(self.mixer, Submodule) else self.mixer

    @property
    def norm_module(self) -> nn.Module:
        return self.norm.submodule if isinstance(self.norm, Submodule) else self.norm

    def to_residual(self, stream: torch.Tensor) -> torch.Tensor:
        if self.config.residual_in_fp32:
            return stream.to(torch.promote_types(stream.dtype, torch.float32))
        return stream

    def tiled(self, pre: Pointwise = identity) -> TiledLayer:
        """With the summed stream x = hidden + residual: x' = skip(x) + mixer(add-norm(x)), after
        `pre` (the previous ph block's GatedMLP, pointwise) where there is one.

        ps: the forward-strand half feeds the BiMamba as is (a causal and an
        anti-causal scan); the RC half feeds it flipped over length and
        channels, which makes its forward scan anti-causal and its reverse scan
        causal in genome coordinates.
        """
        norm, mixer, config = self.norm_module, self.bimamba, self.config
        if not config.rcps:
            scans = mixer.scans(prepare=then(pre, lambda x: norm(x.to(norm.weight.dtype))))
            return TiledLayer(scans, skip=then(pre, self.to_residual), join=pair_combine(mixer, len(scans)))
        d = config.d_model

        def halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            first, second = x[..., :d], x[..., d:]
            return (second, first) if config.fused_add_norm else (first, second)  # fused: halves swap

        def place_rc(out: torch.Tensor) -> torch.Tensor:
            return out.flip(-1)

        # the forward strand's output fills the first d channels, the RC strand's (channel-flipped) the last d
        scans = mixer.scans(prepare=lambda x: norm(halves(x)[0]), channels=(0, d))
        rc_prepare = lambda x: norm(halves(x)[1].flip(-1))  # noqa: E731
        scans.append(Scan(mixer.mamba_fwd, reverse=True, prepare=rc_prepare, place=place_rc, channels=(d, 2 * d)))
        if mixer.mamba_rev is not None:
            twin = len(scans) - 1 if mixer.weight_tie else None  # tied in_proj over the same RC input
            scans.append(Scan(mixer.mamba_rev, reverse=False, prepare=rc_prepare, place=place_rc, channels=(d, 2 * d),
                              twin=twin))
        return TiledLayer(
            scans, skip=lambda x: self.to_residual(torch.cat(halves(x), dim=-1)), join=pair_combine(mixer, len(scans))
        )


class CaduceusBackbone(nn.Module):
    def __init__(self, config: CaduceusConfig):
        super().__init__()
        self.embeddings = CaduceusEmbeddings(config)
        self.layers = nn.ModuleList(CaduceusBlock(config) for _ in range(config.n_layer))
        norm = _norm(config)
        self.norm_f = Submodule(norm) if (config.rcps and not config.fused_add_norm) else norm


class CaduceusCore(nn.Module):
    """Holds the backbone under `caduceus.backbone`, as in published checkpoints."""

    def __init__(self, config: CaduceusConfig):
        super().__init__()
        self.backbone = CaduceusBackbone(config)


class CaduceusLM(SequenceModel):
    """Caduceus masked LM on one-hot DNA: outputs {"logits": (b, L, padded vocab)}."""

    lm_kind = "masked"
    default_target = "loglik"

    def __init__(self, config: CaduceusConfig, vocabulary: DnaVocabulary | None = None):
        super().__init__()
        self.config = config
        self.vocabulary = vocabulary or default_vocabulary(config)
        complement = config.complement_ids()
        self.complement_vocabulary = DnaVocabulary(
            tuple(complement[i] for i in self.vocabulary.base_ids), complement[self.vocabulary.n_id]
        )
        self.caduceus = CaduceusCore(config)
        V = config.padded_vocab_size
        self.lm_head = RCPSHead(config.d_model, V, complement) if config.rcps else nn.Linear(config.d_model, V, bias=False)
        head, table = self._head_weight_owner(), self.embedding_weight_owner()
        head.weight = table.weight  # the LM head is tied to the embeddings
        names = [str(i) for i in range(V)]
        for base, token in zip("ACGT", self.vocabulary.base_ids):
            names[token] = base
        self.output_channels = {"logits": names}

    def embedding_weight_owner(self) -> nn.Embedding:
        table = self.caduceus.backbone.embeddings.word_embeddings
        return table.embedding if isinstance(table, RCPSEmbeddingTable) else table

    def _head_weight_owner(self) -> nn.Linear:
        return self.lm_head.lm_head if isinstance(self.lm_head, RCPSHead) else self.lm_head

    def tied_parameter_names(self) -> dict[str, str]:
        """Alias -> source of parameters that checkpoints may store once."""
        if self.config.rcps:
            tied = {"lm_head.lm_head.weight": "caduceus.backbone.embeddings.word_embeddings.embedding.weight"}
        else:
            tied = {"lm_head.weight": "caduceus.backbone.embeddings.word_embeddings.weight"}
        for index, layer in enumerate(self.caduceus.backbone.layers):
            prefix = f"caduceus.backbone.layers.{index}.mixer." + ("submodule." if self.config.rcps else "")
            tied.update({prefix + a: prefix + s for a, s in layer.bimamba.tied_parameter_names().items()})
        return tied

    def embed(self, onehot: torch.Tensor) -> torch.Tensor:
        weight = self.embedding_weight_owner().weight
        forward = self.vocabulary.embed(onehot, weight)
        if not self.config.rcps:
            return forward
        # E(RC(x)) flipped over length and channels = flip_C of the complement tokens' embeddings
        return torch.cat([forward, self.complement_vocabulary.embed(onehot, weight).flip(-1)], dim=-1)

    def tiled_layers(self) -> list[TiledLayer]:
        layers, pre = [], identity
        for block in self.caduceus.backbone.layers:
            layers.append(block.tiled(pre))
            pre = block.post()
        return layers

    def head(self, stream: torch.Tensor) -> dict[str, torch.Tensor]:
        """Final norm (per strand half for ps; no swap) and the (RC-summed) LM head."""
        norm_f = self.caduceus.backbone.norm_f
        norm = norm_f.submodule if isinstance(norm_f, Submodule) else norm_f
        if not self.config.rcps:
            for block in self.caduceus.backbone.layers[-1:]:
                stream = block.post()(stream)  # the last block's GatedMLP, if any (folded forward)
            return {"logits": self.lm_head(norm(stream.to(norm.weight.dtype)))}
        weight = self.lm_head.lm_head.weight
        d = self.config.d_model
        # flip_C of the RC half's flip_LC-normed output is norm(flip_C(half))
        return {
            "logits": F.linear(norm(stream[..., :d]), weight)
            + F.linear(norm(stream[..., d:].flip(-1)), weight[self.lm_head.complement_map])
        }


@register_model_type(MODEL_TYPE)
def load_caduceus(directory: Path, config_data: dict, vocab: str | None = None) -> Checkpoint:
    """A Caduceus ph or ps checkpoint with its published key names."""
    state = read_weights(directory)
    try:
        config = CaduceusConfig.from_dict(config_data, weight_names=state)
        vocabulary = resolve_vocabulary(directory, config_data, vocab, default=default_vocabulary(config))
        model = CaduceusLM(config, vocabulary)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{directory}/config.json: {exc}") from None
    vocabulary.check(config.padded_vocab_size, str(directory))
    for name, buffer in model.state_dict().items():
        if name.endswith("complement_map") and name in state and not torch.equal(state[name].long(), buffer):
            raise ModelError(f"{directory}: {name} in the weights differs from complement_map in config.json")
    load_state_strictly(model, state, model.tied_parameter_names(), str(directory))
    kind = "ps, reverse-complement equivariant" if config.rcps else "ph"
    mixers = "Mamba-2" if config.mixer_layer == "Mamba2" else "Mamba-1"
    mlp = f", gated MLP {config.mlp_hidden}" if config.mlp_hidden else ""
    architecture = (
        f"Caduceus-{kind} (masked LM, {mixers} mixers{mlp}, bidirectional={config.bidirectional}, d_model {config.d_model}, "
        f"{config.n_layer} layers, fused_add_norm={config.fused_add_norm}, vocabulary {vocabulary.to_string()})"
    )
    return Checkpoint(model, architecture, config_data.get("max_seq_len") or config_data.get("max_position_embeddings"))
