"""The curated table of known selective-SSM DNA models (`known_models.json`), and which are cached.

One data file, shipped in the package, serves `pgf models list` and the documentation's model
table, so the two cannot disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from importlib import resources


@dataclass(frozen=True)
class KnownModel:
    """One row of the table (the data file's keys)."""

    id: str
    family: str
    mixer: str
    context_bp: int
    strands: str
    parameters: str
    vocabulary: str
    license: str
    objective: str
    loads: str  # 'yes' or 'untested' (see the data file's `about`)
    card: str
    note: str = ""


def _data() -> dict:
    return json.loads(resources.files("pgf.models").joinpath("known_models.json").read_text(encoding="utf-8"))


def known_models() -> list[KnownModel]:
    """Every row of the table, in the file's order."""
    names = {f.name for f in fields(KnownModel)}
    return [KnownModel(**{k: v for k, v in row.items() if k in names}) for row in _data()["models"]]


def checked_on() -> str:
    """The date the table's facts were checked against their sources."""
    return _data()["checked"]


def is_cached(repo_id: str) -> bool:
    """Whether the standard Hub cache (HF_HOME / HF_HUB_CACHE) holds a snapshot of `repo_id`'s default branch."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
