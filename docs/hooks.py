"""Build-time parts of the documentation site (mkdocs hooks; `hooks:` in mkdocs.yml).

Every page that describes something the code defines is generated from the code when the
site is built, so the site cannot drift from it:

- the CLI reference: the Typer app's command tree, every command, argument and option
  (`cli_reference_markdown`);
- the model table: `pgf.models.known`, the data file `pgf models list` prints; the model
  types a checkpoint directory may declare: the registry of loaders; the built-in model's
  card: the MODEL_CARD.md shipped in the package;
- the benchmark figures: drawn with matplotlib from bench/results/*.json(l), each captioned
  with the machine and commit its file records;
- the tutorial (docs/tutorial.ipynb): executed with nbclient on every build, in a scratch
  folder beside a link to sample_data/; a cell that raises fails the build. The executed copy
  is what mkdocs-jupyter renders, and the files it writes (the HTML report) join the site.

A page asks for generated text with a marker line, `<!-- pgf-generated: NAME -->`
(NAME one of GENERATORS); an unknown NAME is an error.
"""

from __future__ import annotations

import html
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files, InclusionLevel

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TUTORIAL = "tutorial.ipynb"
TUTORIAL_OUTPUT = "tutorial_output"  # the folder the tutorial writes into (relative to docs/)
TUTORIAL_TIMEOUT_S = 600  # per cell
BENCH_RESULTS = ROOT / "bench" / "results"
MARKER = re.compile(r"^<!-- pgf-generated: ([a-z0-9-]+) -->[ \t]*$", re.MULTILINE)

log = logging.getLogger("mkdocs.hooks.pgf")

# state of one build (mkdocs serve rebuilds call on_config again)
_build: dict = {}


# ---------------------------------------------------------------------------------------------
# Markdown helpers


def _escape(text: str, in_table: bool = False) -> str:
    """Help text as Markdown: `code spans` kept, everything else shown literally."""
    out = []
    for index, part in enumerate(re.split(r"(`[^`]*`)", text)):
        if index % 2 == 1:  # a code span
            out.append(_code_cell(part[1:-1]) if in_table and "|" in part else part)
            continue
        part = html.escape(part, quote=False)
        part = re.sub(r"([\\*_\[\]#~])", r"\\\1", part)
        if in_table:
            part = part.replace("|", "\\|")
        out.append(part)
    return "".join(out)


def _code_cell(text: str) -> str:
    """Code in a table cell: raw <code>, since a Markdown code span would show an escaped pipe as \\|."""
    return "<code>" + html.escape(text, quote=False).replace("|", "&#124;") + "</code>"


def _paragraphs(text: str) -> str:
    """A command's help: paragraphs as Typer separates them (blank lines), lines joined."""
    blocks = [" ".join(line.strip() for line in block.splitlines()) for block in re.split(r"\n\s*\n", text.strip())]
    return "\n\n".join(_escape(block) for block in blocks if block)


# ---------------------------------------------------------------------------------------------
# The CLI reference


def cli_commands():
    """(path, command, context) of the root and of every command and subcommand, depth first, in the
    order `--help` lists them."""
    import typer.main

    from pgf.cli.app import app

    root = typer.main.get_command(app)
    ctx = typer.Context(root, info_name="pgf")

    def walk(command, context, path):
        yield path, command, context
        if hasattr(command, "list_commands"):
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                if sub is None or getattr(sub, "hidden", False):
                    continue
                yield from walk(sub, typer.Context(sub, info_name=name, parent=context), [*path, name])

    yield from walk(root, ctx, ["pgf"])


def option_names(command, context) -> list[str]:
    """Every flag of a command (long and short, and the --no- forms)."""
    names = []
    for param in command.get_params(context):
        if param.param_type_name == "option" and not getattr(param, "hidden", False):
            names += [*param.opts, *param.secondary_opts]
    return names


def anchor(path: list[str], flag: str | None = None) -> str:
    """The id of a command's heading (`pgf-attribute`) or of one of its options (`pgf-attribute--window`)."""
    base = "-".join(path)
    return base if flag is None else f"{base}--{flag.lstrip('-')}"


def cli_reference_markdown() -> str:
    parts = []
    for path, command, context in cli_commands():
        level = "#" * min(len(path) + 1, 4)
        title = " ".join(path)
        parts.append(f"{level} `{title}` {{#{anchor(path)}}}\n")
        if command.help:
            parts.append(_paragraphs(command.help) + "\n")
        pieces = command.collect_usage_pieces(context)
        parts.append(f"```text\n{title} {' '.join(pieces)}\n```\n")
        arguments, options = [], []
        for param in command.get_params(context):
            record = param.get_help_record(context)
            if record is None or getattr(param, "hidden", False):
                continue
            (arguments if param.param_type_name == "argument" else options).append((param, record))
        if arguments:
            parts.append("| argument | description |\n|---|---|")
            for _, (name, text) in arguments:
                parts.append(f"| {_code_cell(name)} | {_escape(text, True)} |")
            parts.append("")
        if options:
            parts.append("| option | description |\n|---|---|")
            for param, (name, text) in options:
                ids = "".join(f'<a id="{anchor(path, flag)}"></a>' for flag in (*param.opts, *param.secondary_opts)
                              if flag.startswith("--"))
                parts.append(f"| {ids}{_code_cell(name)} | {_escape(text, True)} |")
            parts.append("")
        if hasattr(command, "list_commands"):
            subs = [(name, command.get_command(context, name)) for name in command.list_commands(context)]
            rows = [f"| [`{title} {name}`](#{anchor([*path, name])}) | {_escape(sub.get_short_help_str(200), True)} |"
                    for name, sub in subs if sub is not None and not getattr(sub, "hidden", False)]
            parts.append("| command | what it does |\n|---|---|\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Models


def models_table_markdown() -> str:
    """The curated table `pgf models list` prints, from the same data file (pgf.models.known)."""
    from importlib import resources

    from pgf.models.known import checked_on, known_models

    about = json.loads(resources.files("pgf.models").joinpath("known_models.json").read_text(encoding="utf-8"))["about"]
    rows = ["| model | family | mixer | context (bp) | strands | parameters | vocabulary | license | objective | loads | note |",
            "|---|---|---|---:|---|---|---|---|---|---|---|"]
    for m in known_models():
        rows.append(f"| [`{m.id}`]({m.card}) | {m.family} | {m.mixer} | {m.context_bp:,} | {m.strands} | {m.parameters} "
                    f"| {m.vocabulary} | {_escape(m.license, True)} | {m.objective} | {m.loads} | {_escape(m.note, True)} |")
    return (f"Facts checked {checked_on()} (`pgf_cli/pgf/models/known_models.json`).\n\n" + "\n".join(rows)
            + f"\n\n{_escape(about)}\n")


MODEL_TYPES = {
    "caduceus": "Caduceus ph and ps (RC-equivariant) masked LMs with Mamba-1 or Mamba-2 mixers (PlantCAD2), with "
                "their published key names and tokenizer ids (A7 C8 G9 T10, N 11; PlantCaduceus a3 c4 g5 t6, N → "
                "[UNK] 2); ps checkpoints run with the `fused_add_norm` half selection they were trained with.",
    "mamba": "Hugging Face `MambaForCausalLM`. Its vocabulary is not DNA-specific: say which token each base is with "
             "`--vocab A=ID,C=ID,G=ID,T=ID,N=ID` or a `\"pgf_vocab\"` object in config.json.",
    "mamba2": "Hugging Face `Mamba2ForCausalLM` (Mamba-2 / SSD mixers); `--vocab` as for `mamba`.",
    "mamba_ssm": "mamba_ssm's native `MambaLMHeadModel` layout (Mamba-1 or Mamba-2 layers, with or without the "
                 "gated MLP; attention layers are refused): a config.json with no `model_type` but MambaConfig's "
                 "`d_model`, `n_layer` and `ssm_cfg`.",
    "pgf-track-ssm": "pgf's own (Bi)Mamba with a per-position regression head (the built-in model's format).",
}


def model_types_markdown() -> str:
    """The `model_type` values a checkpoint's config.json may name: every loader registered in pgf.models."""
    from pgf.models.types import find_loader, model_types

    rows = ["| `model_type` | what it loads |", "|---|---|"]
    for name in model_types():
        text = MODEL_TYPES.get(name)
        if text is None:  # a type added since this page was written: its loader's own words
            doc = (find_loader(name).__doc__ or "").strip()
            text = _escape(doc.split("\n\n")[0].replace("\n", " ")) if doc else f"loader `{find_loader(name).__module__}`"
        rows.append(f"| `{name}` | {text} |")
    return "\n".join(rows) + "\n"


def builtin_model_card_markdown() -> str:
    """The built-in model's card as shipped in the package, its headings one level down."""
    from importlib import resources

    card = resources.files("pgf.models").joinpath("builtin/MODEL_CARD.md").read_text(encoding="utf-8")
    lines = card.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]  # the page has its own title
    return "\n".join("#" + line if line.startswith("#") else line for line in lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Benchmarks


def _load_result(path: Path):
    """A results file as a dict: JSON as is; JSON lines as {'environment': first line's, 'records': the rest}."""
    if path.suffix == ".json":
        return json.loads(path.read_text())
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        return {}
    first = lines[0]
    if "environment" in first and len(first) == 1:
        return {"environment": first["environment"], "records": lines[1:]}
    if "device_name" in first or "git_commit" in first:
        return {"environment": first, "records": lines[1:]}
    return {"records": lines}


def _environment(data: dict) -> dict:
    env = data.get("environment")
    if isinstance(env, dict):
        return env
    for key in ("after", "before"):  # before/after comparisons record one environment per side
        side = data.get(key)
        if isinstance(side, dict) and isinstance(side.get("environment"), dict):
            return side["environment"]
    return {}


def machine_of(data: dict) -> str:
    env = _environment(data)
    name = env.get("device_name") or env.get("machine") or data.get("machine")
    if not name:
        return "not recorded in the file"
    if name == "cpu" and env.get("machine"):
        name = f"cpu ({env['machine']})"
    cpus = env.get("cpus")
    return f"{name}, {cpus} CPUs" if cpus and "cpu" in str(name).lower() else str(name)


def commit_of(data: dict) -> str:
    env = _environment(data)
    commit = env.get("git_commit") or env.get("commit")
    if not commit:
        return "not recorded in the file"
    dirty = commit.endswith("-dirty")
    return commit.removesuffix("-dirty")[:9] + (" (with uncommitted changes)" if dirty else "")


def _caption(path: Path, data: dict, what: str) -> str:
    env = _environment(data)
    software = ", ".join(f"{k} {env[k]}" for k in ("torch", "triton", "cuda") if env.get(k))
    command = env.get("command") or env.get("script")
    model = env.get("model") or env.get("layer")
    what = f"{what} `bench/results/{path.name}`" + (f" ({model})" if isinstance(model, str) else "")
    text = (f"{what}; machine: {machine_of(data)}"
            f"{'; ' + software if software else ''}; commit: {commit_of(data)}")
    return text + (f"; command: `{command}`" if command else "") + "."


def _is_throughput(data: dict) -> bool:
    records = data.get("records")
    return isinstance(records, list) and bool(records) and all(
        isinstance(r, dict) and {"model", "length", "engine", "kernels"} <= set(r) for r in records)


def _is_kernel_scan(data: dict) -> bool:
    cases = data.get("cases")
    return isinstance(cases, list) and bool(cases) and all({"method", "length", "dtype"} <= set(c) for c in cases)


def _is_memory_sweep(data: dict) -> bool:
    records = data.get("records")
    return (isinstance(records, list) and len({r.get("length") for r in records if "peak_rss_bytes" in r}) > 1
            and all("method" in r and "length" in r and "setting" not in r for r in records))


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


KERNEL_STYLES = {"reference": "--", "none": ":"}  # compiled kernels (cpu, triton, auto): solid lines


def _plot_throughput(data: dict):
    """bp/s against region length, one panel per model, one colour per engine; one-length models as bars.
    The `batch` records (many short regions at once) are left to the table: their length is not a region's."""
    import matplotlib.pyplot as plt

    records = [r for r in data["records"] if r.get("bp_per_s") and r["engine"] != "batch"]
    models = list(dict.fromkeys(r["model"] for r in records))
    engines = list(dict.fromkeys(r["engine"] for r in records))
    colours = {engine: plt.get_cmap("tab10")(i % 10) for i, engine in enumerate(engines)}
    figure, axes = plt.subplots(1, len(models), figsize=(4.8 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = [r for r in records if r["model"] == model]
        keys = list(dict.fromkeys((r["engine"], r["kernels"]) for r in rows))
        if len({r["length"] for r in rows}) > 1:
            for engine, kernels in keys:
                points = sorted((r["length"], r["bp_per_s"]) for r in rows if (r["engine"], r["kernels"]) == (engine, kernels))
                variant = next((r["variant"] for r in rows if (r["engine"], r["kernels"]) == (engine, kernels) and "variant" in r), None)
                label = f"{variant}, {kernels} kernels" if variant and kernels != "none" else variant or f"{engine}, {kernels} kernels"
                ax.plot([p[0] for p in points], [p[1] for p in points], KERNEL_STYLES.get(kernels, "-"), marker="o",
                        ms=4, color=colours[engine] if not variant else plt.get_cmap("tab10")(keys.index((engine, kernels))),
                        label=label)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("region length (bp)")
            ax.set_ylabel("bp per second")
        else:
            values = [next(r["bp_per_s"] for r in rows if (r["engine"], r["kernels"]) == key) for key in keys]
            ax.barh(range(len(keys)), values, color=[colours[e] for e, _ in keys],
                    hatch=None, alpha=0.85)
            for i, (engine, kernels) in enumerate(keys):
                if kernels in KERNEL_STYLES:
                    ax.patches[i].set_hatch("//")
            ax.set_yticks(range(len(keys)), [f"{e}, {k}" for e, k in keys], fontsize=7)
            ax.invert_yaxis()
            ax.set_xlabel(f"bp per second at {rows[0]['length']:,} bp (hatched: reference kernels)")
        ax.set_yscale("log") if ax.get_xlabel() == "region length (bp)" else ax.set_xscale("log")
        ax.set_title(model)
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def _plot_kernel_scan(data: dict):
    import matplotlib.pyplot as plt

    cases = [c for c in data["cases"] if c.get("seconds")]
    dtypes = list(dict.fromkeys(c["dtype"] for c in data["cases"]))
    figure, axes = plt.subplots(1, len(dtypes), figsize=(4.8 * len(dtypes), 3.6), squeeze=False, sharey=True)
    for ax, dtype in zip(axes[0], dtypes):
        for method in dict.fromkeys(c["method"] for c in data["cases"]):
            points = sorted((c["length"], c["seconds"]) for c in cases if c["method"] == method and c["dtype"] == dtype)
            if points:
                ax.plot([p[0] for p in points], [p[1] * 1e3 for p in points],
                        "--s" if method.startswith("reference") else "-o", label=method, ms=4)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"one selective scan, {dtype} (missing points: out of memory)", fontsize=9)
        ax.set_xlabel("positions")
        ax.set_ylabel("milliseconds")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def _plot_memory_sweep(data: dict):
    import matplotlib.pyplot as plt

    records = data["records"]
    figure, ax = plt.subplots(figsize=(5.4, 3.6))
    for method in dict.fromkeys(r["method"] for r in records):
        points = sorted((r["length"], r["peak_rss_bytes"] / 2**30) for r in records
                        if r["method"] == method and "peak_rss_bytes" in r)
        ax.plot([p[0] for p in points], [p[1] for p in points], "-o", label=method, ms=4)
        for r in records:
            if r["method"] == method and "skipped" in r:
                ax.annotate(f"{method} at {r['length']:,}: skipped\n({r['skipped']})", (r["length"], points[-1][1]),
                            fontsize=7, ha="right", va="bottom")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("region length (bp)")
    ax.set_ylabel("peak resident memory (GiB)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def benchmark_figures() -> list[tuple[str, bytes, str]]:
    """(site path, PNG, caption) of every results file whose format has a figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    for path in sorted(BENCH_RESULTS.glob("*.json*")):
        data = _load_result(path)
        if not isinstance(data, dict):
            continue
        if _is_throughput(data):
            figure, what = _plot_throughput(data), "Throughput (bp/s; higher is better) from"
        elif _is_kernel_scan(data):
            figure, what = _plot_kernel_scan(data), "Selective-scan kernel time (lower is better) from"
        elif _is_memory_sweep(data):
            figure, what = _plot_memory_sweep(data), "Peak memory of one gradient (lower is better) from"
        else:
            continue
        figures.append((f"benchmarks/{path.stem}.png", _png(figure), _caption(path, data, what)))
        plt.close(figure)
    return figures


def benchmark_figures_markdown() -> str:
    parts = []
    for uri, _, caption in _build.get("figures", []):
        name = Path(uri).stem
        parts.append(f"### `{name}` {{#{name}}}\n\n![{name}]({uri})\n\n{caption}\n")
    return "\n".join(parts)


def benchmark_files_markdown() -> str:
    """Every results file with the machine and commit it records."""
    rows = ["| file | machine | commit |", "|---|---|---|"]
    for path in sorted(p for p in BENCH_RESULTS.iterdir() if p.suffix in (".json", ".jsonl")):
        data = _load_result(path)
        data = data if isinstance(data, dict) else {}
        rows.append(f"| `{path.name}` | {_escape(machine_of(data), True)} | {commit_of(data)} |")
    for folder in sorted(p for p in BENCH_RESULTS.iterdir() if p.is_dir()):
        rows.append(f"| `{folder.name}/` | logs: {', '.join(f'`{p.name}`' for p in sorted(folder.iterdir()))} | see the logs |")
    return "\n".join(rows) + "\n"


def benchmark_readme_markdown() -> str:
    """bench/results/README.md (what each file is and which command wrote it), without its title."""
    lines = (BENCH_RESULTS / "README.md").read_text().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The tutorial


def execute_notebook(source: Path, workdir: Path, timeout: int = TUTORIAL_TIMEOUT_S) -> Path:
    """Run the notebook `source` in workdir/docs/ (workdir/sample_data links to the repository's) and
    return the executed copy. A cell that raises (a failed `%%bash` command included) is a PluginError."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    docs = workdir / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    if not (workdir / "sample_data").exists():
        (workdir / "sample_data").symlink_to(ROOT / "sample_data", target_is_directory=True)
    notebook = nbformat.read(source, as_version=4)
    # the kernel finds this environment's `pgf` (the console script beside this Python) first
    env_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    os.environ["PATH"] = env_path
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(docs)}})
    started = time.monotonic()
    try:
        client.execute()
    except CellExecutionError as error:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # the traceback without terminal colours
        raise PluginError(f"{source.name}: a cell failed while building the docs:\n{message}") from error
    log.info("executed %s in %.0f s", source.name, time.monotonic() - started)
    executed = docs / source.name
    nbformat.write(notebook, executed)
    return executed


# ---------------------------------------------------------------------------------------------
# The output format, read from the files the tutorial wrote in this build

ROOT_ATTRIBUTES = {
    "command_line": "the command as it was run",
    "started": "when the run started (ISO 8601)",
    "finished": "when it finished",
    "host": "the machine's name",
    "device": "where it computed",
    "python_version": "Python's version",
    "torch_version": "PyTorch's version",
    "tool_version": "pgf's version",
    "fasta": "the FASTA as given",
    "fasta_index_sha256": "sha256 of the FASTA index (.fai): which genome, checked by --resume and pgf merge",
    "regions_sha256": "sha256 of the region list",
    "shard": "K/N of --shard, empty without",
    "chrom_names": "the FASTA's sequences, in its order",
    "chrom_lengths": "their lengths",
    "method": "--method",
    "target": "the target's canonical text",
    "model_id": "builtin, random-test, the checkpoint directory or the Hub id",
    "model_revision": "the Hub commit the model came from (empty for local models)",
    "model_checksum": "sha256 of the model's parameters",
    "model_trained": "false for random-test",
    "engine": "pgf or autograd",
    "dtype": "the compute dtype",
}
GROUP_ATTRIBUTES = {
    "chrom": "the region's sequence",
    "start": "its start, 0-based",
    "end": "its end (half-open)",
    "name": "the BED name column, when given",
    "target_value": "f, the differentiated target's value (NaN with --window)",
    "bases_sha256": "sha256 of the bases computed on (checked by --resume)",
}
DATASETS = {
    "gradient": "d f / d onehot",
    "score": "the method's per-base score (NaN at masked bases)",
    "onehot": "the bases the model saw",
    "hypothetical": "the gradient minus its mean over the 4 bases",
    "integrated_gradients": "the integrated-gradients attribution of each base",
    "integrated_gradients_path_gradient": "the weighted mean gradient along the paths",
}
DATASET_ATTRIBUTES = {
    "columns": "the order of the last axis",
    "definition": "what the dataset holds, in words",
    "baseline": "zeros, uniform or shuffle",
    "n_baselines": "baselines averaged",
    "steps": "nodes on each path",
    "quadrature": "the rule of the path integral",
    "seed": "seed of the shuffles and draws",
    "rc_average": "whether the reverse-complement strand was averaged in",
    "target_value": "f(x)",
    "baseline_target_value": "mean f over the baselines",
    "completeness_error": "|Σ attributions − (f(x) − mean f(x′))| / |f(x) − mean f(x′)|",
}


def _value(value) -> str:
    """An attribute's value as the table shows it (long ones shortened)."""
    import numpy as np

    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray):
        text = "[" + ", ".join(str(v.decode() if isinstance(v, bytes) else v) for v in value[:3].tolist()) + (", …]" if len(value) > 3 else "]")
    elif isinstance(value, (float, np.floating)):
        text = f"{float(value):.6g}"
    else:
        text = str(value)
    if len(text) > 60:
        text = text[:57] + "…"
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`" if text else "(empty)"


def _described(kind: str, names, descriptions: dict) -> list[str]:
    missing = [name for name in names if name not in descriptions]
    if missing:  # a warning: `mkdocs build --strict` fails until this page describes them
        log.warning("docs/hooks.py: %s without a description in the output-format page: %s", kind, ", ".join(missing))
    return [_escape(descriptions.get(name, ""), True) for name in names]


def hdf5_layout_markdown() -> str:
    import h5py

    output = _build["workdir"] / "docs" / TUTORIAL_OUTPUT
    parts = []
    with h5py.File(output / "sample.h5") as h5:
        names = sorted(h5.attrs)
        rows = [f"| `{n}` | {d} | {_value(h5.attrs[n])} |" for n, d in zip(names, _described("root attributes", names, ROOT_ATTRIBUTES))]
        parts.append("### Root attributes\n\n| attribute | meaning | in the sample job |\n|---|---|---|\n" + "\n".join(rows))
        (name, group), = h5.items()
        own = [n for n in sorted(group.attrs) if n not in ROOT_ATTRIBUTES]
        rows = [f"| `{n}` | {d} | {_value(group.attrs[n])} |" for n, d in zip(own, _described("group attributes", own, GROUP_ATTRIBUTES))]
        repeated = ", ".join(f"`{n}`" for n in sorted(group.attrs) if n in ROOT_ATTRIBUTES)
        parts.append(f"### Each region's group (`{name}` in the sample job)\n\n| attribute | meaning | in the sample job |\n"
                     f"|---|---|---|\n" + "\n".join(rows) + f"\n\nand, as on the root: {repeated}.")
    rows = []
    for file in ("sample.h5", "ig.h5", "elements.h5"):
        with h5py.File(output / file) as h5:
            group = next(iter(h5.values()))
            method = "every method" if file == "sample.h5" else f"`{group.attrs['method']}`"
            for key in group:
                if any(row.startswith(f"| `{key}` ") for row in rows):
                    continue
                dataset = group[key]
                (meaning,) = _described("datasets", [key], DATASETS)
                attributes = ", ".join(f"`{a}`" for a in dataset.attrs)
                rows.append(f"| `{key}` | {meaning} | ({', '.join(['L', *map(str, dataset.shape[1:])])}) {dataset.dtype} "
                            f"| {method} | {attributes} |")
                _described("dataset attributes", list(dataset.attrs), DATASET_ATTRIBUTES)
    parts.append("### Datasets\n\n| dataset | what | shape, type | written by | attributes |\n|---|---|---|---|---|\n" + "\n".join(rows))
    with h5py.File(output / "ig.h5") as h5:
        dataset = next(iter(h5.values()))["integrated_gradients"]
        names = list(dataset.attrs)
        rows = [f"| `{n}` | {d} | {_value(dataset.attrs[n])} |"
                for n, d in zip(names, _described("dataset attributes", names, DATASET_ATTRIBUTES))]
        parts.append("### Attributes of a method's dataset (`integrated_gradients` in the tutorial)\n\n"
                     "| attribute | meaning | in the tutorial |\n|---|---|---|\n" + "\n".join(rows))
    return "\n\n".join(parts) + "\n"


def bedgraph_example_markdown() -> str:
    path = _build["workdir"] / "docs" / TUTORIAL_OUTPUT / "sample.bedgraph"
    with open(path) as handle:
        lines = [next(handle).rstrip("\n") for _ in range(28)]
    return "```text\n" + "\n".join(line if len(line) < 160 else line[:157] + "…" for line in lines) + "\n…\n```\n"


# ---------------------------------------------------------------------------------------------
# mkdocs events


GENERATORS = {
    "cli-reference": cli_reference_markdown,
    "models-table": models_table_markdown,
    "model-types": model_types_markdown,
    "builtin-model-card": builtin_model_card_markdown,
    "benchmark-figures": benchmark_figures_markdown,
    "benchmark-files": benchmark_files_markdown,
    "benchmark-readme": benchmark_readme_markdown,
    "hdf5-layout": hdf5_layout_markdown,
    "bedgraph-example": bedgraph_example_markdown,
}


def on_config(config):
    _cleanup()
    _build["workdir"] = Path(tempfile.mkdtemp(prefix="pgf-docs-"))
    return config


@event_priority(-100)  # after mkdocs-jupyter has taken the notebook
def on_files(files: Files, config) -> Files:
    started = time.monotonic()
    _build["figures"] = benchmark_figures()
    for uri, png, _ in _build["figures"]:
        files.append(File.generated(config, uri, content=png))
    log.info("drew %d benchmark figures in %.1f s", len(_build["figures"]), time.monotonic() - started)

    tutorial = files.get_file_from_path(TUTORIAL)
    if tutorial is None:
        raise PluginError(f"docs/{TUTORIAL} is missing")
    executed = execute_notebook(Path(tutorial.abs_src_path), _build["workdir"])
    tutorial.abs_src_path = str(executed)
    # the files the tutorial wrote and links to (the HTML report, the figure) join the site, in place of
    # any that a local run of the notebook left in docs/tutorial_output/ (which exclude_docs leaves out)
    output = executed.parent / TUTORIAL_OUTPUT
    for path in sorted(output.rglob("*")):
        if path.is_file() and path.suffix in (".html", ".png"):
            uri = f"{TUTORIAL_OUTPUT}/{path.relative_to(output).as_posix()}"
            if (stale := files.get_file_from_path(uri)) is not None:
                files.remove(stale)
            files.append(File.generated(config, uri, abs_src_path=str(path), inclusion=InclusionLevel.INCLUDED))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    def replace(match):
        name = match.group(1)
        if name not in GENERATORS:
            raise PluginError(f"{page.file.src_path}: unknown generated section '{name}' (known: {', '.join(GENERATORS)})")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)


def on_post_build(config):
    _cleanup()


def on_build_error(error):
    _cleanup()


def _cleanup():
    workdir = _build.pop("workdir", None)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)
