"""Finding and loading models: `builtin`, `random-test`, or a checkpoint directory.

`builtin` is the pgf-track-ssm checkpoint shipped inside the package
(pgf/models/builtin/: config.json, model.safetensors, MODEL_CARD.md), trained
by scripts/train_builtin.py on simulated DNA.

A checkpoint directory holds config.json and model.safetensors (or
pytorch_model.bin). The format comes from config.json's `model_type`:
"pgf-track-ssm" (pgf's own), "mamba" (Hugging Face MambaForCausalLM),
"caduceus" (Caduceus ph and ps masked LMs).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import safetensors.torch
import torch

from pgf.errors import ModelError
from pgf.models import caduceus, hf_mamba
from pgf.models.base import ModelInfo, SequenceModel
from pgf.models.checkpoint import load_state_strictly, read_config, read_weights
from pgf.models.checksum import state_checksum
from pgf.models.tokens import DnaVocabulary, parse_vocabulary
from pgf.models.track_ssm import MODEL_TYPE, TrackSSM, TrackSSMConfig

RANDOM_TEST = "random-test"
BUILTIN = "builtin"
RANDOM_TEST_CONFIG = TrackSSMConfig(d_model=16, n_layer=2, d_state=8, expand=2, channels=("signal",))
RANDOM_TEST_SEED = 0
RANDOM_TEST_NOTE = "tiny randomly initialised network for smoke tests; untrained, its attributions mean nothing"
BUILTIN_DIR = Path(__file__).with_name("builtin")
BUILTIN_NOTE = (
    "trained on simulated DNA with a known regulatory grammar (see its MODEL_CARD.md); "
    "a demonstration and ground-truth check, not a model of any real genome"
)


@dataclass
class LoadedModel:
    """A model ready to run, with its identity."""

    model: SequenceModel
    info: ModelInfo


def _count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # shared (tied) parameters counted once


def build_random_test_model() -> TrackSSM:
    """The `random-test` model: deterministic random weights from a fixed seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_TEST_SEED)
        return TrackSSM(RANDOM_TEST_CONFIG)


def save_checkpoint(model: TrackSSM, directory: str | Path) -> None:
    """Write config.json and model.safetensors (tied parameters stored once)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tied = model.tied_parameter_names()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in tied}
    safetensors.torch.save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")


def _checkpoint_model(directory: Path, model: SequenceModel, architecture: str, context_length: int | None) -> LoadedModel:
    """A loaded checkpoint with its identity (id = directory name, checksum of the parameters)."""
    info = ModelInfo(
        model_id=directory.resolve().name,
        architecture=architecture,
        checksum=state_checksum(model.state_dict()),
        trained=True,
        n_parameters=_count_parameters(model),
        context_length=context_length,
    )
    return LoadedModel(model, info)


def _load_track_ssm(directory: Path, config_data: dict) -> LoadedModel:
    try:
        config = TrackSSMConfig.from_dict(config_data)
        model = TrackSSM(config)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{directory}/config.json: {exc}") from None
    load_state_strictly(model, read_weights(directory), model.tied_parameter_names(), str(directory))
    return _checkpoint_model(
        directory,
        model,
        architecture=f"{MODEL_TYPE} ({'bi' if config.bidirectional else 'causal '}Mamba, "
        f"d_model {config.d_model}, {config.n_layer} layers)",
        context_length=config.context_length,
    )


def _load_hf_mamba(directory: Path, config_data: dict, vocab: str | None) -> LoadedModel:
    vocabulary = _vocabulary(directory, config_data, vocab)
    try:
        config = hf_mamba.HFMambaConfig.from_dict(config_data)
        model = hf_mamba.HFMambaLM(config, vocabulary)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{directory}/config.json: {exc}") from None
    vocabulary.check(config.vocab_size, str(directory))
    load_state_strictly(model, read_weights(directory), model.tied_parameter_names(), str(directory))
    return _checkpoint_model(
        directory,
        model,
        architecture=f"Hugging Face MambaForCausalLM (causal, d_model {config.hidden_size}, "
        f"{config.num_hidden_layers} layers, vocabulary {vocabulary.to_string()})",
        context_length=None,
    )


def _load_caduceus(directory: Path, config_data: dict, vocab: str | None) -> LoadedModel:
    try:
        config = caduceus.CaduceusConfig.from_dict(config_data)
        vocabulary = _vocabulary(directory, config_data, vocab, default=caduceus.default_vocabulary(config))
        model = caduceus.CaduceusLM(config, vocabulary)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{directory}/config.json: {exc}") from None
    vocabulary.check(config.padded_vocab_size, str(directory))
    state = read_weights(directory)
    for name, buffer in model.state_dict().items():
        if name.endswith("complement_map") and name in state and not torch.equal(state[name].long(), buffer):
            raise ModelError(f"{directory}: {name} in the weights differs from complement_map in config.json")
    load_state_strictly(model, state, model.tied_parameter_names(), str(directory))
    kind = "ps, reverse-complement equivariant" if config.rcps else "ph"
    return _checkpoint_model(
        directory,
        model,
        architecture=f"Caduceus-{kind} (masked LM, bidirectional={config.bidirectional}, d_model {config.d_model}, "
        f"{config.n_layer} layers, fused_add_norm={config.fused_add_norm}, vocabulary {vocabulary.to_string()})",
        context_length=config_data.get("max_seq_len") or config_data.get("max_position_embeddings"),
    )


def _vocabulary(
    directory: Path, config_data: dict, vocab: str | None, default: DnaVocabulary | None = None
) -> DnaVocabulary:
    if vocab is not None:
        return parse_vocabulary(vocab)
    if "pgf_vocab" in config_data:
        return parse_vocabulary(config_data["pgf_vocab"])
    if default is not None:
        return default
    raise ModelError(
        f"{directory}: which token is each base? add \"pgf_vocab\": {{\"A\": id, \"C\": id, \"G\": id, \"T\": id, \"N\": id}} "
        "to config.json or pass --vocab A=ID,C=ID,G=ID,T=ID,N=ID"
    )


def load_checkpoint(directory: str | Path, vocab: str | None = None) -> LoadedModel:
    """Load a checkpoint directory; its format comes from config.json's `model_type`."""
    directory = Path(directory)
    config_data = read_config(directory)
    model_type = config_data.get("model_type")
    if model_type == MODEL_TYPE:
        return _load_track_ssm(directory, config_data)
    if model_type == hf_mamba.MODEL_TYPE:
        return _load_hf_mamba(directory, config_data, vocab)
    if model_type == caduceus.MODEL_TYPE:
        return _load_caduceus(directory, config_data, vocab)
    raise ModelError(
        f"{directory}: model_type {model_type!r} is not supported by this version of pgf "
        f"(supported: {MODEL_TYPE!r}, {hf_mamba.MODEL_TYPE!r}, {caduceus.MODEL_TYPE!r})"
    )


def load_builtin() -> LoadedModel:
    """The shipped model, identified as `builtin` (its checksum tells versions apart)."""
    if not (BUILTIN_DIR / "config.json").is_file():
        raise ModelError(f"the built-in model's files are missing from {BUILTIN_DIR}; reinstall pgf")
    loaded = load_checkpoint(BUILTIN_DIR)
    loaded.info = replace(loaded.info, model_id=BUILTIN, note=BUILTIN_NOTE)
    return loaded


def load_model(
    spec: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, vocab: str | None = None
) -> LoadedModel:
    """Resolve `spec` (`builtin`, `random-test` or a directory) to a model in eval mode.

    `vocab` (`A=ID,C=ID,G=ID,T=ID,N=ID`) says which token each base is, for
    checkpoints whose vocabulary is not DNA-specific (Hugging Face Mamba).
    """
    if spec == BUILTIN:
        loaded = load_builtin()
    elif spec == RANDOM_TEST:
        model = build_random_test_model()
        info = ModelInfo(
            model_id=RANDOM_TEST,
            architecture=f"{MODEL_TYPE} (biMamba, d_model {RANDOM_TEST_CONFIG.d_model}, {RANDOM_TEST_CONFIG.n_layer} layers)",
            checksum=state_checksum(model.state_dict()),
            trained=False,
            n_parameters=_count_parameters(model),
            context_length=None,
            note=RANDOM_TEST_NOTE,
        )
        loaded = LoadedModel(model, info)
    else:
        path = Path(spec)
        if not path.exists():
            raise ModelError(f"model {spec!r} not found: expected '{BUILTIN}', '{RANDOM_TEST}' or a checkpoint directory")
        if not path.is_dir():
            raise ModelError(f"model {spec!r} is a file; pass the checkpoint directory that holds config.json")
        loaded = load_checkpoint(path, vocab=vocab)
    loaded.model.to(device=device, dtype=dtype).eval()
    return loaded


def human_count(n: int) -> str:
    """1234567 -> '1.23M'."""
    if n < 1000:
        return str(n)
    exponent = min(int(math.log10(n) // 3), 3)
    return f"{n / 10 ** (3 * exponent):.3g}{' kMG'[exponent]}"
