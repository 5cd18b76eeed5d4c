"""`pgf models show` (what a model is, before running it) and `pgf models pull` (fetch a Hub model ahead of time)."""

from __future__ import annotations

from typing import Annotated

import typer

from pgf.cli.errors import run_guarded
from pgf.cli.options import ShowVocabOption
from pgf.models.hub import resolve
from pgf.models.mamba2 import mixer_facts
from pgf.models.registry import human_count, load_model

models_app = typer.Typer(help="Inspect models.", no_args_is_help=True)


def describe(spec: str, vocab: str | None = None) -> list[tuple[str, str]]:
    """(field, value) lines describing the model `spec`."""
    loaded = load_model(spec, vocab=vocab)
    info, model = loaded.info, loaded.model
    vocabulary = getattr(model, "vocabulary", None)
    outputs = "; ".join(
        f"{name} ({len(channels)} channels: {', '.join(channels[:8])}{', ...' if len(channels) > 8 else ''})"
        for name, channels in model.output_channels.items()
    )
    return [
        ("model", info.model_id),
        *([("revision", info.revision)] if info.revision else []),
        ("architecture", info.architecture),
        *[("mixer", line) for line in mixer_facts(model)],
        ("parameters", f"{info.n_parameters:,} ({human_count(info.n_parameters)})"),
        ("size", f"{info.n_parameters * 4 / 2**20:.1f} MiB in fp32"),
        ("context length", f"{info.context_length:,} bp" if info.context_length else "not stated by the checkpoint"),
        ("vocabulary", vocabulary.to_string() if vocabulary else "one-hot input (A, C, G, T; N embeds as its own vector)"),
        ("outputs", outputs),
        ("default target", model.default_target),
        ("trained", "yes" if info.trained else f"NO: {info.note}"),
        ("checksum", f"sha256:{info.checksum}"),
    ]


@models_app.command("show")
def show(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="'builtin', 'random-test', 'random-test-mamba2', a checkpoint directory or a Hub id "
                                                    "ORG/NAME[@REVISION].")],
    vocab: ShowVocabOption = None,
) -> None:
    """Print a model's architecture, size, context length, vocabulary and checksum."""

    def work() -> None:
        lines = describe(model, vocab)
        width = max(len(name) for name, _ in lines)
        for name, value in lines:
            typer.echo(f"{name:<{width}}  {value}")

    run_guarded(work, ctx)


@models_app.command("pull")
def pull(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="ORG/NAME[@REVISION]", help="A Hugging Face Hub model id.")],
) -> None:
    """Download a Hub model into the local cache ahead of time (for cluster nodes without a network; the
    same HF_HOME there, with HF_HUB_OFFLINE=1), and print where it went."""

    def work() -> None:
        snapshot = resolve(model)
        load_model(str(snapshot.folder))  # pgf can load it: the architecture is one pgf implements
        typer.echo(f"{snapshot.repo_id} at commit {snapshot.commit}: {snapshot.folder}")

    run_guarded(work, ctx)
