"""Engine names as the CLI knows them."""

from __future__ import annotations

from pgf.engine.autograd import AutogradEngine
from pgf.engine.base import Engine
from pgf.engine.protocol import Backend
from pgf.engine.tiled_engine import TiledEngine
from pgf.errors import PgfUserError

ENGINES = ("pgf", "autograd")
DEFAULT_ENGINE = "pgf"


def get_engine(name: str, tile: int | None = None, offload: bool | None = None, backend: Backend = None) -> Engine:
    """The engine called `name` ("pgf": the tiled engine, which `tile` and `offload` configure), its
    mixers running the `backend` kernels."""
    if name == "autograd":
        return AutogradEngine(backend)
    if name == "pgf":
        return TiledEngine(tile=tile, offload=offload, backend=backend)
    raise PgfUserError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
