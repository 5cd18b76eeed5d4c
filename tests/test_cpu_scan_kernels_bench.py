"""bench/cpu_scan_kernels.py runs as documented, beside another commit's kernels too."""

import json
import subprocess

import pytest

from bench import cpu_scan_kernels
from bench.results_io import ROOT
from pgf_kernels.cpu_common import available

pytestmark = pytest.mark.skipif(not available(), reason="numba is not available")

BEFORE_SPANS = "e417c0d"  # before the state-major kernels (its tangent kernel takes no span argument)


def _has(revision: str) -> bool:
    probe = subprocess.run(["git", "cat-file", "-e", f"{revision}:{cpu_scan_kernels.KERNELS_PATH}"], cwd=ROOT,
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.parametrize("revision", [BEFORE_SPANS])
def test_it_times_every_kernel_beside_another_commits_kernels(revision, tmp_path, capsys):
    if not _has(revision):
        pytest.skip(f"this checkout has no {revision} (a shallow clone or no git)")
    out = tmp_path / "kernels.json"
    assert cpu_scan_kernels.main(["--length", "100", "--E", "20", "--N", "3", "--K", "2", "--repeats", "1",
                                  "--rounds", "1", "--compare-with", revision, "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["environment"]["blocks"]["tangent_span"] >= 1
    seen = {(r["kernels"], r["kernel"]) for r in payload["records"]}
    assert seen == {(v, k) for v in ("working tree", revision) for k in ("forward", "adjoint", "tangent")}
    assert all(r["seconds"] > 0 and r["g_state_updates_per_s"] > 0 for r in payload["records"])
    assert len(capsys.readouterr().out.strip().splitlines()) == 6
