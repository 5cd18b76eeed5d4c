"""The `pgf` command: the root options and the commands (one module each, in pgf.cli.commands)."""

from __future__ import annotations

from typing import Annotated

import typer

import pgf
from pgf.cli.commands.attribute import attribute
from pgf.cli.commands.check import check
from pgf.cli.commands.effect import effect
from pgf.cli.commands.export import export_app
from pgf.cli.commands.merge import merge
from pgf.cli.commands.models import models_app
from pgf.cli.commands.models_list import list_models
from pgf.cli.commands.plot import plot
from pgf.cli.commands.report import report
from pgf.cli.errors import CliState

app = typer.Typer(
    name="pgf",
    help="Exact per-base input sensitivities of selective state-space DNA models (Phase Gradient Flow).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# `pgf --help` lists the commands in this order (groups after the plain commands)
models_app.command("list")(list_models)
app.add_typer(models_app, name="models")
app.add_typer(export_app, name="export")
app.command()(merge)
app.command()(plot)
app.command()(report)
app.command()(attribute)
app.command()(effect)
app.command()(check)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pgf {pgf.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    ctx.ensure_object(CliState).debug = debug


def main() -> None:
    """Console-script entry point."""
    app()
