"""Engine names as the CLI knows them."""

from __future__ import annotations

from pgf.engine.autograd import AutogradEngine
from pgf.engine.base import Engine
from pgf.errors import PgfUserError

ENGINES = ("pgf", "autograd")
DEFAULT_ENGINE = "autograd"  # becomes "pgf" when the adjoint engine lands


def get_engine(name: str, tile: int | None = None) -> Engine:
    """The engine called `name`; `tile` is the tile length for tiled engines."""
    if name == "autograd":
        return AutogradEngine()
    if name == "pgf":
        raise PgfUserError(
            "the PGF adjoint engine is not part of this version of pgf yet; use --engine autograd"
        )
    raise PgfUserError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
