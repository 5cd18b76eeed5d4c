"""The README's sample job computes the numbers it computed when the guard was recorded.

tests/data/readme_job_fingerprint.json summarises the job's output (reference kernels,
2048-position tiles): the target value, the total |gradient|, |gradient| summed over each
1,000-bp block, and the scores of the 20 strongest bases. A refactoring that changes the
arithmetic's result fails here; the float32 rounding of another CPU, BLAS or torch build
(relative differences near 1e-6) does not, so the guard holds on any machine.
Regenerate (only for an intended change of the numbers): python tests/test_readme_job_fingerprint.py
"""

import json
import re
import shlex
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from pgf.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
FINGERPRINT_FILE = ROOT / "tests" / "data" / "readme_job_fingerprint.json"
BLOCK = 1000
RTOL = 1e-4  # float32 sums of 39,539 x 4 values on another machine stay far inside this


def readme_job_arguments() -> list[str]:
    match = re.search(r"\bpgf (attribute sample_data/[^\n&|;]+)", (ROOT / "README.md").read_text())
    assert match, "the README no longer shows the sample job"
    args = shlex.split(match.group(1))
    output = args.index("-o")
    return args[:output] + args[output + 2 :]  # the test names its own output


def run_job(out: Path) -> dict:
    """Run the README job (reference kernels, tile 2048) into `out` and summarise its output."""
    args = [*[a for a in readme_job_arguments() if a != "--force"], "--kernels", "reference", "--tile", "2048", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with h5py.File(out) as h5:
        (name,) = list(h5)
        gradient, score = h5[name]["gradient"][()], h5[name]["score"][()]
        target = float(h5[name].attrs["target_value"])
    magnitude = np.abs(gradient).astype(np.float64).sum(axis=1)
    blocks = np.add.reduceat(magnitude, np.arange(0, len(magnitude), BLOCK))
    top = np.argsort(-np.abs(score), kind="stable")[:20]
    return {
        "target_value": target,
        "gradient_abs_sum": float(magnitude.sum()),
        "block_abs_sums": blocks.tolist(),
        "top_positions": top.tolist(),
        "top_scores": score[top].astype(np.float64).tolist(),
    }


@pytest.mark.slow
def test_readme_job_output_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    recorded = json.loads(FINGERPRINT_FILE.read_text())
    now = run_job(tmp_path / "sample.h5")
    assert now["target_value"] == pytest.approx(recorded["target_value"], rel=1e-5)
    assert now["gradient_abs_sum"] == pytest.approx(recorded["gradient_abs_sum"], rel=RTOL)
    total = recorded["gradient_abs_sum"]
    np.testing.assert_allclose(now["block_abs_sums"], recorded["block_abs_sums"], rtol=RTOL, atol=1e-6 * total)
    # the strongest bases keep their scores (positions looked up in the recorded order, so ties cannot reorder them)
    with h5py.File(tmp_path / "sample.h5") as h5:
        (group,) = h5.values()
        score = group["score"][()]
    np.testing.assert_allclose(score[recorded["top_positions"]], recorded["top_scores"], rtol=RTOL)


if __name__ == "__main__":  # record the guard from the current code
    import os
    import tempfile

    os.chdir(ROOT)
    with tempfile.TemporaryDirectory() as folder:
        summary = run_job(Path(folder) / "sample.h5")
    about = {"about": "Summary of the README sample job's output (reference kernels, tile 2048); "
                      "see tests/test_readme_job_fingerprint.py", "command": " ".join(["pgf", *readme_job_arguments(),
                      "--kernels", "reference", "--tile", "2048"])}
    FINGERPRINT_FILE.write_text(json.dumps({**about, **summary}, indent=1) + "\n")
    print(f"wrote {FINGERPRINT_FILE}", file=sys.stderr)
