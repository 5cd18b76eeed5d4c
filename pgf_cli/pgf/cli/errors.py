"""Turning exceptions into exit codes: 2 for user mistakes, 1 for internal errors, 130 for Ctrl-C, 143 for SIGTERM.

A SIGTERM (what a batch scheduler sends before killing a job) is turned into
a `Terminated` exception, handled like Ctrl-C: the work stops where it is,
what is complete stays in the partial output, and the message says how to resume.
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import typer

from pgf.errors import PgfUserError

T = TypeVar("T")

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM received (exit code 143)."""

    signum = signal.SIGTERM


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def command_line() -> str:
    """The command as typed (quoted for a shell)."""
    return " ".join(shlex.quote(arg) for arg in ["pgf", *sys.argv[1:]])


def resume_command() -> str:
    """The command line with --resume added (what to run to continue)."""
    arguments = sys.argv[1:]
    return " ".join(shlex.quote(arg) for arg in ["pgf", *arguments, *([] if "--resume" in arguments else ["--resume"])])


def _interrupted(exc: KeyboardInterrupt) -> None:
    code = EXIT_TERMINATED if getattr(exc, "signum", signal.SIGINT) == signal.SIGTERM else EXIT_INTERRUPTED
    what = "terminated (SIGTERM)" if code == EXIT_TERMINATED else "interrupted"
    saved, partial = getattr(exc, "saved", None), getattr(exc, "partial", None)
    if partial is None:
        typer.echo(f"{what}; no output was written", err=True)
    else:
        typer.echo(
            f"{what}; {saved} of {exc.total} regions are saved in {partial}; to finish, run: {resume_command()}",
            err=True,
        )
    raise typer.Exit(code) from None


@dataclass
class CliState:
    """Options of the root command, carried to the subcommands in the click context (`ctx.obj`)."""

    debug: bool = False


def debug_requested(ctx: typer.Context | None) -> bool:
    """Whether `pgf --debug` was given (False without a command context, e.g. in library use)."""
    state = ctx.find_object(CliState) if ctx is not None else None
    return state is not None and state.debug


def run_guarded(work: Callable[[], T], ctx: typer.Context | None = None) -> T:
    """Run `work`; print a one-line message instead of a traceback (unless --debug, read from `ctx`)."""
    debug = debug_requested(ctx)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main else None
    try:
        return work()
    except PgfUserError as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except typer.Exit:
        raise
    except Exception as exc:
        if debug:
            traceback.print_exc()
        typer.echo(
            f"internal error: {type(exc).__name__}: {exc} (this is a bug in pgf; rerun with --debug for the traceback)",
            err=True,
        )
        raise typer.Exit(EXIT_INTERNAL_ERROR) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
