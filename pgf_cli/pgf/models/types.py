"""Model types by `model_type` (config.json): each model module registers its own loader.

A loader reads a checkpoint directory (config.json already parsed) and returns
the model with a one-line architecture description and its trained context.
The registry (`pgf.models.registry`) only looks types up; a new format is a new
module with a `@register_model_type(...)` loader, nothing else to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pgf.models.base import SequenceModel


@dataclass
class Checkpoint:
    """What a loader returns."""

    model: SequenceModel
    architecture: str  # one line, shown by `pgf models show`
    context_length: int | None  # trained context in bp, when the checkpoint states one


# loader(directory, parsed config.json, --vocab text or None) -> Checkpoint
Loader = Callable[[Path, dict, "str | None"], Checkpoint]
_LOADERS: dict[str, Loader] = {}


def register_model_type(model_type: str) -> Callable[[Loader], Loader]:
    """Decorator: `loader` reads checkpoints whose config.json says `model_type`."""

    def register(loader: Loader) -> Loader:
        _LOADERS[model_type] = loader
        return loader

    return register


def _discover() -> None:
    """Import every module of pgf.models once, so that each registers its types."""
    package = importlib.import_module("pgf.models")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"pgf.models.{module.name}")


def find_loader(model_type: str) -> Loader | None:
    """The loader registered for `model_type`, or None."""
    if model_type not in _LOADERS:
        _discover()
    return _LOADERS.get(model_type)


def model_types() -> list[str]:
    """Every registered model_type, sorted."""
    _discover()
    return sorted(_LOADERS)
