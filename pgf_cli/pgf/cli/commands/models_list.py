"""`pgf models list`: the curated table of known selective-SSM DNA models, and which are cached here."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pgf.cli.errors import run_guarded
from pgf.models.known import checked_on, is_cached, known_models


def list_models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON (with a 'cached' field) instead of a table.")] = False,
) -> None:
    """List known selective-SSM DNA models on the Hugging Face Hub: family, mixer, trained context, strands,
    parameters, vocabulary, license as the card states it, whether pgf loads it, and whether it is in the
    local cache (`pgf models pull ID` fetches one)."""

    def work() -> None:
        rows = [(model, is_cached(model.id)) for model in known_models()]
        if as_json:
            typer.echo(json.dumps([{**asdict(model), "cached": cached} for model, cached in rows], indent=1))
            return
        table = Table(title=f"Known selective-SSM DNA models (facts checked {checked_on()})", title_justify="left")
        table.add_column("model", no_wrap=True)
        for column in ("mixer", "context", "strands", "params", "license", "loads", "cached"):
            table.add_column(column, justify="right" if column == "context" else "left")
        for model, cached in rows:
            table.add_row(model.id, model.mixer, f"{model.context_bp:,}", model.strands, model.parameters,
                          model.license, model.loads, "yes" if cached else "no")
        console = Console(highlight=False)
        console.print(table)
        console.print("context in bp; ps: both strands, RC-equivariant; ph: RC by averaging. Vocabularies, notes and sources: "
                      "pgf models list --json; any of them: pgf models show ID")

    run_guarded(work, ctx)
