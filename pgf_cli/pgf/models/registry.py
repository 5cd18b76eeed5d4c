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
from pgf.models.base import ModelInfo, SequenceModel
from pgf.models.hub import is_model_id, resolve
from pgf.models.checkpoint import read_config
from pgf.models.checksum import state_checksum
from pgf.models.track_ssm import TrackSSM, TrackSSMConfig, describe
from pgf.models.types import find_loader, model_types

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


def load_checkpoint(directory: str | Path, vocab: str | None = None) -> LoadedModel:
    """Load a checkpoint directory; its format comes from config.json's `model_type`."""
    directory = Path(directory)
    config_data = read_config(directory)
    model_type = config_data.get("model_type")
    loader = find_loader(model_type) if isinstance(model_type, str) else None
    if loader is None:
        supported = ", ".join(repr(name) for name in model_types())
        raise ModelError(f"{directory}: model_type {model_type!r} is not supported by this version of pgf (supported: {supported})")
    checkpoint = loader(directory, config_data, vocab)
    info = ModelInfo(
        model_id=directory.resolve().name,
        architecture=checkpoint.architecture,
        checksum=state_checksum(checkpoint.model.state_dict()),
        trained=True,
        n_parameters=_count_parameters(checkpoint.model),
        context_length=checkpoint.context_length,
    )
    return LoadedModel(checkpoint.model, info)


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
            architecture=describe(RANDOM_TEST_CONFIG),
            checksum=state_checksum(model.state_dict()),
            trained=False,
            n_parameters=_count_parameters(model),
            context_length=None,
            note=RANDOM_TEST_NOTE,
        )
        loaded = LoadedModel(model, info)
    elif is_model_id(spec):
        snapshot = resolve(spec)
        loaded = load_checkpoint(snapshot.folder, vocab=vocab)
        loaded.info = replace(loaded.info, model_id=snapshot.repo_id, revision=snapshot.commit)
    else:
        path = Path(spec)
        if not path.exists():
            raise ModelError(f"model {spec!r} not found: expected '{BUILTIN}', '{RANDOM_TEST}', a checkpoint directory "
                             "or a Hugging Face Hub id ORG/NAME[@REVISION]")
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
