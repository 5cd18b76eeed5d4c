"""Engine names as the CLI knows them."""

from __future__ import annotations

from pgf.engine.autograd import AutogradEngine
from pgf.engine.base import Engine
from pgf.engine.tiled import PgfEngine
from pgf.errors import PgfUserError

ENGINES = ("pgf", "autograd")
DEFAULT_ENGINE = "pgf"


def get_engine(name: str, tile: int | None = None, offload: bool | None = None) -> Engine:
    """The engine called `name`; `tile` and `offload` configure the tiled engine."""
    if name == "autograd":
        return AutogradEngine()
    if name == "pgf":
        return PgfEngine(tile=tile, offload=offload)
    raise PgfUserError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
