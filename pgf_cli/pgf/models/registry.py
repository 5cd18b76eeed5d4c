"""Finding and loading models: `builtin`, `random-test`, or a checkpoint directory.

`builtin` is the pgf-track-ssm checkpoint shipped inside the package
(pgf/models/builtin/: config.json, model.safetensors, MODEL_CARD.md), trained
by scripts/train_builtin.py on simulated DNA.

A checkpoint directory holds config.json and model.safetensors (or
pytorch_model.bin). The format comes from config.json's `model_type`:
"pgf-track-ssm" (pgf's own), "mamba" / "mamba2" (Hugging Face MambaForCausalLM /
Mamba2ForCausalLM), "caduceus" (Caduceus ph and ps masked LMs, Mamba-1 or Mamba-2 mixers); a
config.json with no model_type but MambaConfig's d_model, n_layer and ssm_cfg is mamba_ssm's
native format ("mamba_ssm").
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
from pgf.models.caduceus import CaduceusLM
from pgf.models.caduceus_config import CaduceusConfig
from pgf.models.checksum import state_checksum
from pgf.models.mamba_ssm_lm import NATIVE_MODEL_TYPE, looks_native
from pgf.models.track_ssm import TrackSSM, TrackSSMConfig, describe
from pgf.models.types import find_loader, model_types

RANDOM_TEST = "random-test"
BUILTIN = "builtin"
RANDOM_TEST_CONFIG = TrackSSMConfig(d_model=16, n_layer=2, d_state=8, expand=2, channels=("signal",))
RANDOM_TEST_SEED = 0
RANDOM_TEST_NOTE = "tiny randomly initialised network for smoke tests; untrained, its attributions mean nothing"
# random-test-mamba2: a Caduceus-ps masked LM with Mamba-2 mixers (4 heads of 8 in 2 groups, state 8,
# and a d_mlp = 16 branch: expand 3 gives d_inner 48 = d_ssm 32 + 16), PlantCaduceus vocabulary
RANDOM_TEST_MAMBA2 = "random-test-mamba2"
RANDOM_TEST_MAMBA2_CONFIG = CaduceusConfig(
    d_model=16, n_layer=2, vocab_size=7, rcps=True, complement_map={3: 6, 4: 5, 5: 4, 6: 3}, mixer_layer="Mamba2",
    ssm_cfg={"d_state": 8, "d_conv": 4, "expand": 3, "headdim": 8, "d_ssm": 32, "ngroups": 2},
)
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


def build_random_test_mamba2_model() -> CaduceusLM:
    """The `random-test-mamba2` model: deterministic random weights from a fixed seed, with steps
    large enough that the scans carry information along the sequence, and embeddings (tied to the
    LM head) small enough that the logits do not saturate."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_TEST_SEED)
        model = CaduceusLM(RANDOM_TEST_MAMBA2_CONFIG)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("dt_bias"):
                parameter.add_(3.0)
            if name.endswith("A_log"):
                parameter.sub_(1.5)
            if name.endswith("word_embeddings.embedding.weight"):
                parameter.mul_(0.3)
    return model


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
    if model_type is None and looks_native(config_data):  # mamba_ssm's MambaConfig names no model_type
        model_type = NATIVE_MODEL_TYPE
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
    """Resolve `spec` (`builtin`, `random-test`, `random-test-mamba2`, a directory or a Hub id) to a model in eval mode.

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
    elif spec == RANDOM_TEST_MAMBA2:
        model = build_random_test_mamba2_model()
        info = ModelInfo(
            model_id=RANDOM_TEST_MAMBA2,
            architecture="Caduceus-ps with Mamba-2 mixers (masked LM, d_model 16, 2 layers, random weights)",
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
            raise ModelError(f"model {spec!r} not found: expected '{BUILTIN}', '{RANDOM_TEST}', '{RANDOM_TEST_MAMBA2}', "
                             "a checkpoint directory "
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
