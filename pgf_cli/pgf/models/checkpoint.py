"""Reading checkpoint directories (config.json + safetensors or torch .bin), strictly."""

from __future__ import annotations

import json
from pathlib import Path

import safetensors.torch
import torch

from pgf.errors import ModelError


def read_config(directory: Path) -> dict:
    """config.json as a dict; a missing or malformed file is a `ModelError`."""
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


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """model.safetensors (preferred) or pytorch_model.bin, loaded with weights_only=True."""
    safetensors_path = directory / "model.safetensors"
    bin_path = directory / "pytorch_model.bin"
    try:
        if safetensors_path.is_file():
            return safetensors.torch.load_file(str(safetensors_path))
        if bin_path.is_file():
            state = torch.load(bin_path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise ModelError(f"{bin_path} does not hold a state dict of tensors")
            return state
    except ModelError:
        raise
    except Exception as exc:  # corrupt or truncated files raise many kinds of errors
        raise ModelError(f"cannot read weights in {directory}: {exc}") from None
    raise ModelError(f"model directory {directory} has neither model.safetensors nor pytorch_model.bin")


def _first(names: list[str]) -> str:
    return repr(names[0]) + (f" (and {len(names) - 1} more)" if len(names) > 1 else "")


def load_state_strictly(
    model: torch.nn.Module, state: dict[str, torch.Tensor], tied: dict[str, str], origin: str
) -> None:
    """Load `state` into `model`, re-tying `tied` aliases (alias -> source) stored once.

    Every missing, unexpected or mis-shaped key and every non-finite weight is
    a `ModelError` naming the key.
    """
    expected = model.state_dict()
    state = dict(state)
    for alias, source in tied.items():
        if alias not in state and source in state:
            state[alias] = state[source]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise ModelError(f"{origin}: missing weight {_first(missing)}")
    if unexpected:
        raise ModelError(f"{origin}: unexpected weight {_first(unexpected)}")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ModelError(
                f"{origin}: weight {name!r} has shape {tuple(tensor.shape)}, the config implies {tuple(expected[name].shape)}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelError(f"{origin}: weight {name!r} holds NaN or infinite values")
    model.load_state_dict(state, strict=True)
    for alias, source in tied.items():  # keep tied parameters one tensor after loading
        _set_parameter(model, alias, _get_parameter(model, source))


def _get_parameter(model: torch.nn.Module, name: str) -> torch.nn.Parameter:
    module_name, _, attr = name.rpartition(".")
    return getattr(model.get_submodule(module_name) if module_name else model, attr)


def _set_parameter(model: torch.nn.Module, name: str, value: torch.nn.Parameter) -> None:
    module_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(module_name) if module_name else model, attr, value)
