"""Batches of equal-length regions, --window/--stride, and the one-pass note for long regions."""

from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import random_sequence, write_fasta
from pgf.cli.app import app
from pgf.models.registry import build_random_test_model, save_checkpoint
from pgf.models.track_ssm import TrackSSM, TrackSSMConfig


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def fasta(tmp_path_factory) -> Path:
    return write_fasta(tmp_path_factory.mktemp("g") / "g.fa", {"chr1": random_sequence(900, 3), "chr2": random_sequence(400, 4)})


def gradients(path):
    with h5py.File(path) as h5:
        return {name: (group["gradient"][()], group.attrs["target_value"], {k: group[k][()] for k in group}) for name, group in h5.items()}


REGIONS = ["--region", "chr1:1-200", "--region", "chr1:301-500", "--region", "chr2:101-300", "--region", "chr2:1-50"]


def test_batched_regions_equal_one_at_a_time(fasta, tmp_path):
    one = invoke("attribute", fasta, *REGIONS, "--model", "random-test", "--device", "cpu", "--batch-size", 1, "-o", tmp_path / "one.h5")
    auto = invoke("attribute", fasta, *REGIONS, "--model", "random-test", "--device", "cpu", "-o", tmp_path / "auto.h5")
    assert one.exit_code == 0 and auto.exit_code == 0, auto.output
    assert auto.stderr.count("(batch of 3)") == 3 and "batch of" not in one.stderr
    single, batched = gradients(tmp_path / "one.h5"), gradients(tmp_path / "auto.h5")
    assert sorted(single) == sorted(batched)
    for name, (gradient, value, _) in single.items():
        np.testing.assert_allclose(batched[name][0], gradient, rtol=0, atol=1e-6 * np.abs(gradient).max())
        assert batched[name][1] == pytest.approx(value, rel=1e-6)


def test_windows_keep_each_crop_from_its_own_window(fasta, tmp_path):
    out = tmp_path / "windows.h5"
    result = invoke("attribute", fasta, "--region", "chr1:1-900", "--window", 300, "--stride", 100,
                    "--model", "random-test", "--device", "cpu", "--dtype", "float64", "-o", out)
    assert result.exit_code == 0, result.output
    assert "target windowed" in result.stderr
    gradient, value, datasets = gradients(out)["chr1:1-900"]
    assert np.isnan(value)
    bounds, values = datasets["window_bounds"], datasets["window_target_value"]
    assert bounds.shape == (9, 4) and values.shape == (9,)
    assert bounds[4].tolist() == [300, 600, 400, 500]  # genome coordinates, 0-based
    # the crop [400, 500) equals a plain run on the window chr1:301-600 alone
    alone = tmp_path / "alone.h5"
    assert invoke("attribute", fasta, "--region", "chr1:301-600", "--model", "random-test", "--device", "cpu",
                  "--dtype", "float64", "-o", alone).exit_code == 0
    window_gradient, window_value, _ = gradients(alone)["chr1:301-600"]
    np.testing.assert_allclose(gradient[400:500], window_gradient[100:200], rtol=0, atol=1e-6 * np.abs(window_gradient).max())
    assert values[4] == pytest.approx(window_value, rel=1e-9)
    # ... and differs from the one-pass gradient, which sees the whole region
    whole = tmp_path / "whole.h5"
    assert invoke("attribute", fasta, "--region", "chr1:1-900", "--model", "random-test", "--device", "cpu", "-o", whole).exit_code == 0
    assert np.abs(gradients(whole)["chr1:1-900"][0][400:500] - gradient[400:500]).max() > 1e-3


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--stride", 10], "--stride needs --window"),
        (["--window", 10, "--stride", 20], "larger than --window"),
        (["--window", 100, "--target", "position:50"], "cannot be computed per window"),
        (["--window", 100, "--target-window", "chr1:1-50"], "exclude each other"),
    ],
)
def test_window_option_errors(fasta, tmp_path, extra, message):
    result = invoke("attribute", fasta, "--region", "chr1:1-300", "--model", "random-test", *extra, "-o", tmp_path / "x.h5")
    assert result.exit_code == 2 and message in result.stderr
    assert not list(tmp_path.iterdir())


def test_one_pass_note_for_regions_longer_than_the_context(fasta, tmp_path):
    model = build_random_test_model()
    short_context = TrackSSM(TrackSSMConfig(**{**model.config.__dict__, "context_length": 250}))
    short_context.load_state_dict(model.state_dict())
    save_checkpoint(short_context, tmp_path / "model")
    result = invoke("attribute", fasta, "--region", "chr1:1-300", "--model", tmp_path / "model", "-o", tmp_path / "x.h5")
    assert result.exit_code == 0, result.output
    assert "exceed the model's trained context (250 bp); computing each in one pass" in result.stderr
    quiet = invoke("attribute", fasta, "--region", "chr1:1-200", "--model", tmp_path / "model", "-o", tmp_path / "y.h5")
    assert "trained context" not in quiet.stderr
