"""Finding and loading models: `builtin`, `random-test`, or a checkpoint directory.

A checkpoint directory holds config.json and model.safetensors. This version
reads pgf's own format (`"model_type": "pgf-track-ssm"`); Caduceus and Hugging
Face Mamba checkpoints come with the model library.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch

from pgf.errors import ModelError
from pgf.models.base import ModelInfo, SequenceModel
from pgf.models.checksum import state_checksum
from pgf.models.track_ssm import MODEL_TYPE, TrackSSM, TrackSSMConfig

RANDOM_TEST = "random-test"
BUILTIN = "builtin"
RANDOM_TEST_CONFIG = TrackSSMConfig(d_model=16, n_layer=2, d_state=8, expand=2, channels=("signal",))
RANDOM_TEST_SEED = 0
RANDOM_TEST_NOTE = "tiny randomly initialised network for smoke tests; untrained, its attributions mean nothing"


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
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k not in tied}
    safetensors.torch.save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")


def _read_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.is_file():
        raise ModelError(f"model directory {directory} has no config.json")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ModelError(f"{path} must hold a JSON object")
    return config


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    safetensors_path = directory / "model.safetensors"
    bin_path = directory / "pytorch_model.bin"
    try:
        if safetensors_path.is_file():
            return safetensors.torch.load_file(str(safetensors_path))
        if bin_path.is_file():
            state = torch.load(bin_path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ModelError(f"{bin_path} does not hold a state dict")
            return state
    except ModelError:
        raise
    except Exception as exc:  # corrupt or truncated files raise many kinds of errors
        raise ModelError(f"cannot read weights in {directory}: {exc}") from None
    raise ModelError(f"model directory {directory} has neither model.safetensors nor pytorch_model.bin")


def load_state_strictly(model: torch.nn.Module, state: dict[str, torch.Tensor], tied: dict[str, str], origin: str) -> None:
    """Load `state` into `model`, re-tying `tied` aliases; every mismatch is an error naming the key."""
    expected = model.state_dict()
    state = dict(state)
    for alias, source in tied.items():
        if alias not in state and source in state:
            state[alias] = state[source]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise ModelError(f"{origin}: missing weight {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if unexpected:
        raise ModelError(f"{origin}: unexpected weight {unexpected[0]!r}" + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ModelError(
                f"{origin}: weight {name!r} has shape {tuple(tensor.shape)}, the config implies {tuple(expected[name].shape)}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelError(f"{origin}: weight {name!r} holds NaN or infinite values")
    model.load_state_dict(state, strict=True)


def load_checkpoint(directory: str | Path) -> LoadedModel:
    """Load a pgf-track-ssm checkpoint directory."""
    directory = Path(directory)
    config_data = _read_config(directory)
    model_type = config_data.get("model_type")
    if model_type != MODEL_TYPE:
        raise ModelError(
            f"{directory}: model_type {model_type!r} is not supported by this version of pgf "
            f"(supported: {MODEL_TYPE!r}; Caduceus and HF Mamba loaders are planned)"
        )
    try:
        config = TrackSSMConfig.from_dict(config_data)
        model = TrackSSM(config)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{directory}/config.json: {exc}") from None
    state = _read_weights(directory)
    load_state_strictly(model, state, model.tied_parameter_names(), str(directory))
    info = ModelInfo(
        model_id=directory.resolve().name,
        architecture=f"{MODEL_TYPE} ({'bi' if config.bidirectional else 'causal '}Mamba, "
        f"d_model {config.d_model}, {config.n_layer} layers)",
        checksum=state_checksum(model.state_dict()),
        trained=True,
        n_parameters=_count_parameters(model),
        context_length=config.context_length,
    )
    return LoadedModel(model, info)


def load_model(spec: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Resolve `spec` (`builtin`, `random-test` or a directory) to a model in eval mode."""
    if spec == BUILTIN:
        raise ModelError(
            "the built-in trained model is not part of this version of pgf yet; "
            f"pass --model DIR (a checkpoint directory) or --model {RANDOM_TEST} for an untrained smoke test"
        )
    if spec == RANDOM_TEST:
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
        loaded = load_checkpoint(path)
    loaded.model.to(device=device, dtype=dtype).eval()
    return loaded


def human_count(n: int) -> str:
    """1234567 -> '1.23M'."""
    if n < 1000:
        return str(n)
    exponent = min(int(math.log10(n) // 3), 3)
    return f"{n / 10 ** (3 * exponent):.3g}{' kMG'[exponent]}"
