"""bench/mamba2_mixer.py runs as documented, beside another commit's mixer too."""

import json
import subprocess

import pytest

from bench import mamba2_mixer
from bench.results_io import ROOT

BEFORE_HAND_VJP = "8722a6e"  # the Mamba-2 mixer's scan still pulled back by autograd


def _has(revision: str) -> bool:
    probe = subprocess.run(["git", "cat-file", "-e", f"{revision}:pgf_cli/pgf/models/mamba2.py"], cwd=ROOT,
                           capture_output=True)
    return probe.returncode == 0


def test_it_times_each_tile_function_of_both_trees_in_their_own_files(tmp_path, capsys):
    if not _has(BEFORE_HAND_VJP):
        pytest.skip(f"this checkout has no {BEFORE_HAND_VJP} (a shallow clone or no git)")
    out = tmp_path / "mixer.json"
    assert mamba2_mixer.main(["--tile", "40", "--repeats", "1", "--rounds", "1", "--compare-with", BEFORE_HAND_VJP,
                              "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    records = payload["records"]
    assert [r["tree"] for r in records] == ["working tree", BEFORE_HAND_VJP]
    here, there = (r["pgf"] for r in records)
    assert here.startswith(str(ROOT)) and not there.startswith(str(ROOT)) and there.endswith("pgf_cli/pgf")
    for record in records:
        assert set(record["seconds"]) == {"forward", "saving", "vjp_kept", "vjp_slim"}
        assert all(0 < s["best"] <= s["median"] for s in record["seconds"].values())
        best = {k: v["best"] for k, v in record["seconds"].items()}
        assert record["gradient_over_forward"] == round((best["saving"] + best["vjp_kept"]) / best["forward"], 3)
    assert payload["environment"]["mixer"]["d_model"] == 768
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
