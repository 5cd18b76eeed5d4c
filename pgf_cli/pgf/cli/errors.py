"""Turning exceptions into exit codes: 2 for user mistakes, 1 for internal errors, 130 for Ctrl-C."""

from __future__ import annotations

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
    try:
        return work()
    except PgfUserError as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        typer.echo("interrupted; no output was written", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
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
