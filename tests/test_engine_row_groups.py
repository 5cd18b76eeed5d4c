"""On CPU the tiled engine sweeps a large batch a few rows at a time, whatever asked for the gradient:
`pgf.gradients`, the interpretation methods (their readouts always say how to cut rows), and
`pgf attribute --method integrated-gradients` over a BED. The engine's plan is asserted, not a time."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import pgf
import pgf.engine.tiled_engine as tiled
from pgf.cli.app import app
from pgf.engine import PositionReadout, TiledEngine

from helpers import random_sequence, write_fasta


@pytest.fixture
def recorded_groups(monkeypatch):
    """The rows of every group the adjoint sweeps (one list per engine.gradient call), with a small
    CPU step so that a few short rows already make several groups (2 rows of 16 positions)."""
    monkeypatch.setattr(tiled, "CPU_STEP_POSITIONS", 32)
    calls: list[list[int]] = []
    real = tiled.adjoint_gradient
    original_gradient = TiledEngine.gradient

    def gradient(self, model, onehot, readout, progress=None):
        calls.append([])
        return original_gradient(self, model, onehot, readout, progress)

    def adjoint(model, onehot, readout, *args, **kwargs):
        calls[-1].append(onehot.shape[0])
        return real(model, onehot, readout, *args, **kwargs)

    monkeypatch.setattr(TiledEngine, "gradient", gradient)
    monkeypatch.setattr(tiled, "adjoint_gradient", adjoint)
    return calls


def batch(rows: int, length: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(rows, length))]


def test_api_gradients_go_in_row_groups_and_equal_the_whole_batch(recorded_groups, monkeypatch):
    model = pgf.load_model("random-test", dtype=torch.float64)
    x = batch(5, 16)
    grouped = pgf.gradients(model, x, tile=16)
    assert recorded_groups == [[2, 2, 1]]
    monkeypatch.setattr(tiled, "CPU_STEP_POSITIONS", 10**6)
    whole = pgf.gradients(model, x, tile=16)
    assert recorded_groups[-1] == [5]
    torch.testing.assert_close(grouped.gradient, whole.gradient, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grouped.target_value, whole.target_value, rtol=1e-12, atol=1e-14)


def test_api_integrated_gradients_go_in_row_groups(recorded_groups):
    model = pgf.load_model("random-test", dtype=torch.float64)
    pgf.integrated_gradients(model, batch(2, 16), steps=4, batch_rows=8)
    # 2 rows x 4 steps = 8 path points per engine call, swept 2 at a time
    assert recorded_groups and all(groups == [2, 2, 2, 2] for groups in recorded_groups)


def test_every_readout_can_be_cut_into_rows():
    """A plain function is refused (it could not be cut); a PositionReadout is one for every row."""
    model = pgf.load_model("random-test")
    x = torch.from_numpy(batch(3, 16))
    with pytest.raises(TypeError, match="Readout"):
        TiledEngine(tile=16).gradient(model, x, lambda outputs, onehot, offset: outputs["logits"][..., 0])
    readout = PositionReadout(lambda outputs, onehot, offset: outputs["logits"][..., 0])
    assert readout.rows(0, 1) is readout


def test_cli_integrated_gradients_over_a_bed_go_in_row_groups(recorded_groups, tmp_path):
    fasta = write_fasta(tmp_path / "g.fa", {"chr1": random_sequence(200, 4)})
    bed = tmp_path / "r.bed"
    bed.write_text("".join(f"chr1\t{s}\t{s + 16}\n" for s in (0, 40, 80)))
    result = CliRunner().invoke(app, [
        "attribute", str(fasta), "--regions", str(bed), "--model", "random-test", "--method", "integrated-gradients",
        "--baseline", "zeros", "--steps", "4", "--tile", "16", "-o", str(tmp_path / "ig.h5"), "-q"])
    assert result.exit_code == 0, result.output
    assert recorded_groups
    assert all(len(groups) > 1 and max(groups) <= 2 for groups in recorded_groups), recorded_groups


def test_api_batch_benchmark_runs_and_reports_its_plan():
    from bench.api_batch import main

    record = main(["--regions", "20", "--length", "1024", "--model", "random-test"])
    assert record["row_groups"] == 2 and record["finite"] and record["kbp_per_s"] > 0  # 16 rows of 1,024 bp a step


def test_tile_sizes_come_from_one_table_per_device_kind():
    from pgf.engine import TILE_BY_DEVICE, TILE_HELP

    engine = TiledEngine()
    assert engine.tile_for(torch.device("cpu")) == TILE_BY_DEVICE["cpu"] == 2048
    assert engine.tile_for(torch.device("cuda")) == TILE_BY_DEVICE["cuda"]
    assert engine.tile_for(torch.device("mps")) == TILE_BY_DEVICE["cpu"]  # unlisted: the CPU's
    assert TiledEngine(tile=100).tile_for(torch.device("cuda")) == 100
    assert f"{TILE_BY_DEVICE['cuda']:,} on CUDA" in TILE_HELP
