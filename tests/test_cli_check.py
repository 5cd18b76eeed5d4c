"""`pgf check` and the engine options of `pgf attribute`."""

from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import random_sequence, write_fasta
from pgf.cli.app import app
from pgf.engine import GradientResult, TiledEngine
from pgf.errors import PgfUserError
from pgf.workflows.check import CheckRequest, run_check


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def fasta(tmp_path_factory) -> Path:
    return write_fasta(tmp_path_factory.mktemp("g") / "g.fa", {"chr1": random_sequence(900, 1), "chr2": random_sequence(300, 2)})


def test_check_agrees_and_reports_numbers(fasta):
    result = invoke("check", fasta, "--region", "chr1:101-900", "--model", "random-test", "--length", 300, "--tile", 7, "--dtype", "float64")
    assert result.exit_code == 0, result.output
    assert "chr1:101-400 (300 bp, tile 7, float64)" in result.stdout
    relative = float(result.stdout.split("max relative")[1].split()[0])
    assert relative <= 1e-12
    assert result.stdout.rstrip().endswith("OK: the engines agree")


def test_check_fails_loudly_when_engines_disagree(fasta, monkeypatch):
    original = TiledEngine.gradient

    def skewed(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        return GradientResult(result.gradient * 1.01, result.target_value)

    monkeypatch.setattr(TiledEngine, "gradient", skewed)
    result = invoke("check", fasta, "--region", "chr1:1-300", "--model", "random-test", "--length", 100)
    assert result.exit_code == 1
    assert "FAILED" in result.stderr


def test_run_check_takes_a_request(fasta):
    result = run_check(CheckRequest(fasta=fasta, region="chr2:11-300", model="random-test", length=50, tile=9, device="cpu"))
    assert (result.region.start, result.region.end, result.tile, result.dtype) == (10, 60, 9, "float32")
    assert result.passed
    with pytest.raises(PgfUserError, match="--length and --tile must be positive"):
        run_check(CheckRequest(fasta=fasta, region="chr2:11-300", model="random-test", length=0))
    with pytest.raises(PgfUserError, match="unknown dtype 'float16'"):
        run_check(CheckRequest(fasta=fasta, region="chr2:11-300", model="random-test", dtype="float16"))


def test_check_user_errors(fasta):
    result = invoke("check", fasta, "--region", "chrZ:1-10", "--model", "random-test")
    assert result.exit_code == 2 and "unknown sequence 'chrZ'" in result.stderr


@pytest.mark.slow
def test_attribute_engines_and_tiles_agree(fasta, tmp_path):
    gradients = {}
    for name, extra in {"autograd": ["--engine", "autograd"], "pgf-13": ["--tile", 13], "pgf-offload": ["--offload"]}.items():
        out = tmp_path / f"{name}.h5"
        result = invoke("attribute", fasta, "--region", "chr2:1-300", "--model", "random-test", "--dtype", "float64", "--device", "cpu", *extra, "-o", out)
        assert result.exit_code == 0, result.output
        with h5py.File(out) as h5:
            gradients[name] = h5["chr2:1-300"]["gradient"][()]
            engine = h5.attrs["engine"]
        assert engine == ("autograd" if name == "autograd" else "pgf")
    scale = np.abs(gradients["autograd"]).max()
    for name in ("pgf-13", "pgf-offload"):
        # stored as float32: equal to float32 rounding
        np.testing.assert_allclose(gradients[name], gradients["autograd"], rtol=0, atol=1e-6 * scale)
