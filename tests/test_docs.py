"""The documentation site is built from the code, and the README is its front page.

The site is built once per test session (`mkdocs build --strict`, which executes the tutorial
notebook; about a minute and a half on 2 cores) and the slow tests read the built pages. The fast
tests check the README and that every `pgf ...` command line in the README and the docs parses
against the CLI as it is.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MAX_README_LINES = 150


def load_hooks():
    """docs/hooks.py (the build-time generators) as a module."""
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("pgf_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def commands():
    """(path, command, context) of `pgf` and every command under it, walked here independently of docs/hooks.py."""
    import typer.main

    from pgf.cli.app import app

    root = typer.main.get_command(app)
    found = []

    def walk(command, context, path):
        found.append((path, command, context))
        if hasattr(command, "list_commands"):
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                walk(sub, typer.Context(sub, info_name=name, parent=context), [*path, name])

    walk(root, typer.Context(root, info_name="pgf"), ["pgf"])
    return found


def flags(command, context) -> list[str]:
    return [flag for p in command.get_params(context) if p.param_type_name == "option" and not getattr(p, "hidden", False)
            for flag in (*p.opts, *p.secondary_opts)]


# ---------------------------------------------------------------------------------------------
# The built site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`mkdocs build --strict` into a temporary folder: a warning (a broken link, anchor or reference, an
    undescribed output field) or a failing tutorial cell fails it."""
    pytest.importorskip("mkdocs")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return out


def text_of(page: Path) -> str:
    """A built page's text, tags removed and entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


@pytest.mark.slow
def test_the_site_builds_strict_with_every_page(site):
    nav_pages = re.findall(r":\s*([\w/.-]+\.(?:md|ipynb))\s*$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    assert len(nav_pages) >= 25
    for page in nav_pages:
        built = site / (Path(page).parent / "index.html" if Path(page).name == "README.md" else Path(page).with_suffix(".html"))
        assert built.is_file(), page
    # generated content is there: the models table from the data file `pgf models list` prints
    from pgf.models.known import known_models

    models = text_of(site / "reference" / "models.html")
    assert all(model.id in models for model in known_models())
    # the API reference from the docstrings
    api = text_of(site / "reference" / "api.html")
    for name in ("load_model", "gradients", "integrated_gradients", "expected_gradients", "ism", "effects"):
        assert f"{name}(" in api, name
    assert "completeness_error" in api
    # a figure per benchmark file that has one, each captioned with its machine and commit
    benchmarks = (site / "benchmarks.html").read_text()
    figures = re.findall(r'src="(benchmarks/[\w.-]+\.png)"', benchmarks)
    assert len(figures) >= 3 and all((site / f).is_file() for f in figures)
    assert text_of(site / "benchmarks.html").count("machine: ") >= len(figures)
    # the output format page is read from the files the tutorial wrote
    output_format = text_of(site / "reference" / "output-format.html")
    for field in ("fasta_index_sha256", "bases_sha256", "completeness_error", "track type=bedGraph"):
        assert field in output_format, field


@pytest.mark.slow
def test_every_option_of_every_command_is_in_the_cli_reference(site):
    page = (site / "reference" / "cli.html").read_text()
    headings = list(re.finditer(r'<h[1-6] id="([^"]+)"', page))
    sections = {m.group(1): page[m.end() : headings[i + 1].start() if i + 1 < len(headings) else len(page)]
                for i, m in enumerate(headings)}
    for path, command, context in commands():
        section_id = "-".join(path)
        assert section_id in sections, f"no section for {' '.join(path)}"
        section = html.unescape(re.sub(r"<[^>]+>", "", sections[section_id]))
        if command.help:
            assert command.help.split("\n")[0].strip()[:40] in " ".join(section.split()), " ".join(path)
        for flag in flags(command, context):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", section), f"{' '.join(path)} {flag}"
            if flag.startswith("--"):
                assert f'id="{section_id}--{flag[2:]}"' in sections[section_id], f"no anchor for {' '.join(path)} {flag}"


@pytest.mark.slow
def test_the_tutorial_ran_without_an_error(site):
    notebook = json.loads((site / "tutorial.ipynb").read_text())  # the executed copy the site offers
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert len(code) >= 10
    for cell in code:
        source = "".join(cell["source"])
        assert cell["execution_count"] is not None, source[:80]
        assert not [o for o in cell["outputs"] if o["output_type"] == "error"], source[:80]
        assert cell["outputs"], f"no output: {source[:80]}"
    text = json.dumps(notebook)
    for step in ("pgf attribute", "pgf plot", "pgf report", "--method integrated-gradients", "pgf export modisco",
                 "pgf.gradients"):
        assert step in text, step
    # the report it wrote is part of the site, and the page links to it
    assert (site / "tutorial_output" / "report.html").stat().st_size > 1_000_000
    assert 'href="tutorial_output/report.html"' in (site / "tutorial.html").read_text()
    # the page's own links (the notebook's Markdown cells are not checked by mkdocs) lead to pages of the site
    page = (site / "tutorial.html").read_text()
    for target in re.findall(r'href="([^"#:]+\.html)(?:#[^"]*)?"', page):
        assert (site / target).is_file(), target
    # its last cell compares the Python API with the CLI: the same gradient (bit for bit on one device)
    (difference,) = re.findall(r"relative to its largest entry: ([-+.0-9e]+)", text)
    assert float(difference) < 1e-5


@pytest.mark.slow
def test_a_failing_tutorial_command_fails_the_build(tmp_path):
    """A `%%bash` cell whose pgf command exits non-zero stops the docs build (the build runs every cell)."""
    import nbformat
    from mkdocs.exceptions import PluginError

    hooks = load_hooks()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%%bash\npgf attribute missing.fa --region chr1:1-100 -o x.h5")],
                                        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    source = tmp_path / "broken.ipynb"
    nbformat.write(notebook, source)
    with pytest.raises(PluginError, match="missing.fa"):
        hooks.execute_notebook(source, tmp_path / "work", timeout=120)


# ---------------------------------------------------------------------------------------------
# Fast checks


def test_the_generated_cli_reference_names_every_option():
    reference = load_hooks().cli_reference_markdown()
    for path, command, context in commands():
        assert f"{{#{'-'.join(path)}}}" in reference, " ".join(path)
        for flag in flags(command, context):
            assert flag in reference, f"{' '.join(path)} {flag}"


def test_the_readme_is_a_front_page():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; the details belong in docs/"
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) == 1 and (ROOT / images[0]).is_file()
    links = [target for target in re.findall(r"(?<!!)\[[^\]]+\]\(([^)#]+)(?:#[^)]*)?\)", text) if "://" not in target]
    for target in links:
        assert (ROOT / target).exists(), target
    site_pages = {str(Path(target).relative_to("docs")) for target in links if target.startswith("docs/")}
    assert {"getting-started.md", "tutorial.ipynb", "reference/cli.md", "reference/api.md", "design.md"} <= site_pages
    # every how-to guide is linked from the front page
    assert {f"how-to/{p.name}" for p in (DOCS / "how-to").glob("*.md")} <= site_pages
    assert "mkdocs serve" in text and "mkdocs build --strict" in text
    # the table of commands names every command
    for name in ("attribute", "effect", "plot", "report", "export modisco", "merge", "models list", "check"):
        assert f"`pgf {name}" in text, name


def code_lines(path: Path) -> list[str]:
    """The shell lines of a page's code: indented and fenced blocks of Markdown, %%bash cells of a notebook;
    continuation lines joined."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        raw = [line for cell in cells if cell["cell_type"] == "code" for line in "".join(cell["source"]).splitlines()]
    else:
        raw, fenced = [], False
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif fenced or line.startswith("    "):
                raw.append(line)
    joined, pending = [], ""
    for line in raw:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append((pending + line).strip())
        pending = ""
    return joined


def pgf_commands(line: str) -> list[list[str]]:
    """The `pgf ...` invocations of a shell line, split as a shell would (`&&`, `;`, `|`; a venv's bin/ and
    VAR=value assignments before the command)."""
    if not re.search(r"(?:^|&&\s*|;\s*)(?:[A-Z_]+=\S*\s+)*(?:[\w./-]*/)?pgf\s", line):
        return []  # not a command line (a layout sketch, Python, a config)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    found, words = [], []
    for token in [*lexer, ";"]:
        if token not in ("&&", "||", ";", "|", "&"):
            words.append(token)
            continue
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words = words[1:]
        if words and words[0].split("/")[-1] == "pgf":
            redirects = [w for w in words if set(w) <= set("<>&0123456789") and set(w) & set("<>")]
            assert not redirects, f"an unquoted < or > would redirect the shell's output: {line}"
            found.append(words[1:])
        words = []
    return found


def test_every_pgf_command_line_in_the_docs_parses():
    """Each `pgf ...` line in a code block of the README, the docs or the tutorial parses against the CLI:
    its command exists, and its options and their values are accepted (nothing is run)."""
    import typer.main

    from pgf.cli.app import app

    root = typer.main.get_command(app)
    pages = [README, *sorted(DOCS.rglob("*.md")), DOCS / "tutorial.ipynb"]
    checked = 0
    for page in pages:
        for line in code_lines(page):
            for args in pgf_commands(line):
                context = root.make_context("pgf", list(args), resilient_parsing=True)
                command, rest, names = root, list(args), ["pgf"]
                while hasattr(command, "list_commands") and rest and not rest[0].startswith("-"):
                    sub = command.get_command(context, rest[0])
                    assert sub is not None, f"{page.name}: no command {rest[0]!r} in: {line}"
                    names.append(rest.pop(0))
                    command = sub
                    if hasattr(command, "list_commands"):
                        context = command.make_context(names[-1], list(rest), parent=context, resilient_parsing=True)
                if "--help" in rest:
                    continue
                try:
                    command.make_context(names[-1], rest, parent=context)
                except Exception as error:  # a usage error: an unknown option, a bad choice or number, a missing argument
                    pytest.fail(f"{page.relative_to(ROOT)}: `{line}` does not parse: {error}")
                checked += 1
    assert checked >= 40
