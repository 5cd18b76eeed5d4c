"""The README's sample job computes the same numbers as before the #19 consolidation.

tests/data/readme_job_fingerprint.json holds sha256 digests of the job's gradient and
score (float32 bytes) as computed at commit 8846a6e with the reference kernels and
2048-position tiles. Refactoring the engine must not change a bit of them. On a machine
whose arithmetic differs (another torch build or CPU), the digests cannot be compared;
the recorded summary is then compared to a float32 tolerance instead.
"""

import hashlib
import json
import platform
import re
import shlex
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pgf.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
FINGERPRINT = json.loads((ROOT / "tests" / "data" / "readme_job_fingerprint.json").read_text())


def readme_job_arguments() -> list[str]:
    match = re.search(r"\bpgf (attribute sample_data/[^\n&|;]+)", (ROOT / "README.md").read_text())
    assert match, "the README no longer shows the sample job"
    args = shlex.split(match.group(1))
    output = args.index("-o")
    return args[:output] + args[output + 2 :]  # the test names its own output


@pytest.mark.slow
def test_readme_job_output_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "sample.h5"
    args = [*[a for a in readme_job_arguments() if a != "--force"], "--kernels", "reference", "--tile", "2048", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with h5py.File(out) as h5:
        (name,) = list(h5)
        gradient, score = h5[name]["gradient"][()], h5[name]["score"][()]
        target = float(h5[name].attrs["target_value"])
    same_arithmetic = FINGERPRINT["torch"] == torch.__version__ and FINGERPRINT["machine"] == platform.machine()
    if same_arithmetic:
        assert hashlib.sha256(np.ascontiguousarray(gradient).tobytes()).hexdigest() == FINGERPRINT["gradient_sha256"]
        assert hashlib.sha256(np.ascontiguousarray(score).tobytes()).hexdigest() == FINGERPRINT["score_sha256"]
    assert target == pytest.approx(FINGERPRINT["target_value"], rel=1e-5)
    assert float(np.abs(gradient).astype(np.float64).sum()) == pytest.approx(FINGERPRINT["gradient_abs_sum"], rel=1e-4)
    np.testing.assert_allclose(score[FINGERPRINT["top_positions"]], FINGERPRINT["top_scores"], rtol=1e-4)
