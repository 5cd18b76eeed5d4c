"""Turning exceptions into exit codes: 2 for user mistakes, 1 for internal errors, 130 for Ctrl-C, 143 for SIGTERM.

A SIGTERM (what a batch scheduler sends before killing a job) or SIGINT stops the work
(`pgf.stopping`: recorded, raised, and raised again at the next step if Python swallowed it):
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
from pathlib import Path
from typing import TypeVar

import typer

from pgf import stopping
from pgf.errors import PgfUserError

T = TypeVar("T")

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def _arguments(context=None) -> list[str]:
    """The arguments after `pgf`: sys.argv for the real entry points, else rebuilt from the command's
    context (library use, tests: CliRunner does not set sys.argv); [] without one."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("")
    if program.name in ("pgf", "pgf.exe") or (program.name == "__main__.py" and program.parent.name == "pgf"):
        return sys.argv[1:]
    if context is None:
        return []
    arguments = [context.info_name] if context.parent is not None else []
    for param in context.command.params:
        value = context.params.get(param.name)
        if value in (None, False, [], ()) or param.name == "ctx":
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            item = getattr(item, "value", item)
            if getattr(param, "param_type_name", "") == "argument":
                arguments.append(str(item))
            elif value is True:
                arguments.append(param.opts[0])
            else:
                arguments += [param.opts[0], str(item)]
    return arguments


def command_line(context=None) -> str:
    """The command as typed (quoted for a shell); `context`: the command's typer context."""
    global _LAST_CONTEXT
    _LAST_CONTEXT = context
    return " ".join(shlex.quote(arg) for arg in ["pgf", *_arguments(context)])


_LAST_CONTEXT = None  # the context of the running command (for the resume hint)


def resume_command() -> str:
    """The command line with --resume added (what to run to continue)."""
    arguments = _arguments(_LAST_CONTEXT)
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
    """Options of the root command, carried to the subcommands in the command context (`ctx.obj`)."""

    debug: bool = False


def debug_requested(ctx: typer.Context | None) -> bool:
    """Whether `pgf --debug` was given (False without a command context, e.g. in library use)."""
    state = ctx.find_object(CliState) if ctx is not None else None
    return state is not None and state.debug


def run_guarded(work: Callable[[], T], ctx: typer.Context | None = None) -> T:
    """Run `work`; print a one-line message instead of a traceback (unless --debug, read from `ctx`).

    `ctx` is also what the resume hint rebuilds the command line from when sys.argv is not pgf's."""
    global _LAST_CONTEXT
    if ctx is not None:
        _LAST_CONTEXT = ctx
    debug = debug_requested(ctx)
    in_main = threading.current_thread() is threading.main_thread()
    stopping.clear()
    previous = {signum: signal.signal(signum, stopping.handle) for signum in (signal.SIGTERM, signal.SIGINT)} \
        if in_main else {}
    previous_hook = sys.unraisablehook
    if in_main:
        sys.unraisablehook = stopping.quieting(previous_hook)
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
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = previous_hook
