"""The package installs what the repository holds, and CI runs what the README says."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_module_paths_are_import_paths():
    """src-style: every module of pgf and pgf_kernels lives at <source folder>/<import path>.py."""
    import importlib

    for package, folder in (("pgf", "pgf_cli"), ("pgf_kernels", "kernels")):
        files = sorted((ROOT / folder / package).rglob("*.py"))
        assert files
        for path in files:
            relative = path.relative_to(ROOT / folder).with_suffix("")
            parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
            if relative.parts[-1] == "__main__":
                continue
            module = importlib.import_module(".".join(parts))
            assert Path(module.__file__).resolve() == path.resolve(), module.__name__


def readme_commands():
    text = (ROOT / "README.md").read_text()
    return [line.strip() for line in text.splitlines() if line.strip().startswith("python3 -m venv")]


def test_readme_has_two_setup_commands_and_ci_runs_both():
    """CI runs the user's install (no extras, in a fresh venv) and the developer's, each as the README says."""
    commands = readme_commands()
    assert len(commands) == 2
    install_and_run, install_and_test = commands
    assert "pgf attribute sample_data/genome.fa" in install_and_run
    assert '-e .' in install_and_run and "[" not in install_and_run.split("&&")[1]  # no extras
    assert "pytest" in install_and_test
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert install_and_run in ci_lines
    assert install_and_test in ci_lines
    first = ci_lines.index(install_and_run)
    assert "rm -rf .venv" in " ".join(ci_lines[first - 3 : first])  # the user's venv is a fresh one
    assert first < ci_lines.index(install_and_test)


def test_every_import_is_a_declared_dependency():
    """deptry: each module that pgf_cli/ and kernels/ import comes from a dependency pyproject.toml declares
    (not one that happens to be installed through another package: typer 0.29 stopped bringing click)."""
    result = subprocess.run([sys.executable, "-m", "deptry", "pgf_cli", "kernels"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_sample_files_exist():
    install_and_run = readme_commands()[0]
    for path in re.findall(r"sample_data/\S+", install_and_run):
        assert (ROOT / path).is_file(), path


def test_kernels_install_under_their_own_name():
    import pgf_kernels

    assert Path(pgf_kernels.__file__).resolve().parent == ROOT / "kernels" / "pgf_kernels"
    out = subprocess.run(
        [sys.executable, "-c", "import pgf, sys; print('kernels' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_wheel_ships_the_builtin_model_and_the_motifs(tmp_path):
    """A non-editable install gets the package data (built-in weights, model card, JASPAR matrices)."""
    import zipfile

    command = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)]
    # with the installed setuptools first, so that it also builds on a machine without a package index
    offline = subprocess.run([*command, "--no-build-isolation"], capture_output=True, timeout=300).returncode == 0
    if not offline:
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("pgf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"pgf/models/builtin/{p.name}" for p in (ROOT / "pgf_cli" / "pgf" / "models" / "builtin").iterdir() if p.is_file()}
    assert "pgf/models/builtin/model.safetensors" in shipped
    assert shipped <= names
    assert "pgf/sim/motifs.json" in names
