"""The package's layering (DESIGN.md): imports point down, modules stay small.

    cli -> workflows -> io / interpret -> models -> engine -> pgf_kernels;  sim is a leaf
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pgf_cli" / "pgf"
KERNELS = ROOT / "kernels" / "pgf_kernels"

# layer -> pgf subpackages it must not import
FORBIDDEN = {
    "engine": {"models", "io", "workflows", "cli", "sim", "interpret"},
    "models": {"io", "workflows", "cli", "sim", "interpret"},
    "interpret": {"io", "workflows", "cli", "sim", "viz"},
    "io": {"models", "engine", "workflows", "cli", "sim", "interpret"},
    "workflows": {"cli", "sim"},
    "sim": {"models", "engine", "io", "workflows", "cli"},
    "viz": {"models", "engine", "workflows", "cli", "sim"},
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_point_down(layer):
    offenders = []
    for path in modules(PACKAGE / layer):
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[0] == "pgf" and len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_kernels_import_nothing_from_pgf():
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules(KERNELS)
        for name in imported_modules(path)
        if name == "pgf" or name.startswith("pgf.")
    ]
    assert not offenders, "\n".join(offenders)


def test_no_package_module_over_400_lines():
    long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for path in modules(PACKAGE)
        if (n := len(path.read_text().splitlines())) > 400
    ]
    assert not long, "\n".join(long)


def test_no_sys_path_edits_in_scripts_bench_tests():
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("scripts", "bench", "tests")
        for path in modules(ROOT / folder)
        if "sys.path.insert" in path.read_text() or "sys.path.append" in path.read_text()
    ]
    offenders = [o for o in offenders if o != "tests/test_layers.py"]
    assert not offenders, "\n".join(offenders)
