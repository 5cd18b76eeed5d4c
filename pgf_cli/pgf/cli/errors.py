"""Turning exceptions into exit codes: 2 for user mistakes, 1 for internal errors, 130 for Ctrl-C."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TypeVar

import typer

from pgf.errors import PgfUserError

T = TypeVar("T")

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


class Settings:
    """Global options set by the root command."""

    debug: bool = False


def run_guarded(work: Callable[[], T]) -> T:
    """Run `work`; print a one-line message instead of a traceback (unless --debug)."""
    try:
        return work()
    except PgfUserError as exc:
        if Settings.debug:
            traceback.print_exc()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        typer.echo("interrupted; no output was written", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except typer.Exit:
        raise
    except Exception as exc:
        if Settings.debug:
            traceback.print_exc()
        typer.echo(
            f"internal error: {type(exc).__name__}: {exc} (this is a bug in pgf; rerun with --debug for the traceback)",
            err=True,
        )
        raise typer.Exit(EXIT_INTERNAL_ERROR) from None
