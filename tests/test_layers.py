"""The package's layering (DESIGN.md), checked by import-linter (contracts in pyproject.toml):

    cli / api -> workflows -> interpret / viz -> io -> models -> engine -> pgf_kernels;  sim is a leaf;
    no import cycles among the modules of any package. Modules stay small.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pgf_cli" / "pgf"
KERNELS = ROOT / "kernels" / "pgf_kernels"


def modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py"))


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_package_module_over_400_lines():
    long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for path in modules(PACKAGE) + modules(KERNELS)
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
