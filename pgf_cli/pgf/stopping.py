"""A stop asked for by SIGTERM or SIGINT, honoured wherever the signal lands.

The CLI's handler records the signal and raises at once. Python swallows an exception raised
while it runs a weakref callback or a `__del__` ("Exception ignored in ..."), so a raise alone
can be lost; every step of a run therefore also calls `check()`, which raises again while a stop
is recorded. The run then stops after flushing what is complete, whenever the signal came; `quieting` keeps
Python from printing the swallowed one as a traceback.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

_requested: int | None = None


class Terminated(KeyboardInterrupt):
    """SIGTERM received (what a batch scheduler sends before it kills a job): exit code 143."""

    signum = signal.SIGTERM


def stop_exception(signum: int) -> KeyboardInterrupt:
    """The exception a stop by `signum` raises: `Terminated` for SIGTERM, KeyboardInterrupt for SIGINT."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def handle(signum: int, frame: object) -> None:
    """Signal handler: record the stop, then raise it."""
    global _requested
    _requested = signum
    raise stop_exception(signum)


def check() -> None:
    """Raise the recorded stop, if any (called between the steps of a run)."""
    if _requested is not None:
        raise stop_exception(_requested)


def requested() -> int | None:
    """The signal that asked for a stop (None: none did)."""
    return _requested


def quieting(previous: Callable) -> Callable:
    """A `sys.unraisablehook` that drops a stop swallowed by Python (it is recorded: `check()` raises
    it again at the next step) and hands everything else to `previous`: no "Exception ignored"
    traceback on stderr for a signal that landed in a weakref callback or a `__del__`."""

    def hook(unraisable) -> None:
        if _requested is not None and isinstance(unraisable.exc_value, KeyboardInterrupt):
            return
        previous(unraisable)

    return hook


def clear() -> None:
    """Forget a recorded stop (a new run in the same process, e.g. in tests)."""
    global _requested
    _requested = None
