"""`--kernels`: the CLI runs the chosen selective-scan kernels, and says so clearly when it cannot."""

import pytest
import torch
from typer.testing import CliRunner

import pgf.workflows.kernels as kernels_module
from pgf.cli.app import app
from pgf.errors import PgfUserError
from pgf.workflows.kernels import DEFAULT_KERNELS, checked_kernels
from pgf_kernels import backends
from pgf_kernels.scan import triton as scan_triton
from helpers import random_sequence, write_fasta


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kernels")
    return write_fasta(folder / "g.fa", {"chr1": random_sequence(400, seed=3)})


def test_default_is_auto_which_means_the_compiled_kernels_on_cpu():
    # Triton validated on an H200 (bench/results/nvidia-h200-gpu-checks); on CPU, auto runs the
    # compiled numba kernels unless a parameter gradient is wanted (training keeps the reference)
    assert DEFAULT_KERNELS == "auto"
    assert backends.resolve_backend(DEFAULT_KERNELS, torch.device("cpu")) == "cpu"
    assert backends.resolve_backend(DEFAULT_KERNELS, torch.device("cpu"), parameter_grads=True) == "reference"


def test_triton_kernels_through_the_cli_agree_with_autograd(genome, monkeypatch):
    # compiled on CUDA; interpreted on CPU otherwise (tests/conftest.py sets TRITON_INTERPRET=1 without CUDA).
    # Two tiles (the second part-filled): what is checked here is that the CLI hands the kernels to the
    # engine; the kernels inside the engines, tile by tile, are tests/test_kernels_scan.py's
    device = "cuda" if torch.cuda.is_available() else "cpu"
    calls = []
    real = scan_triton.scan_forward
    monkeypatch.setattr(scan_triton, "scan_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    result = invoke("check", genome, "--region", "chr1:1-70", "--model", "random-test", "--kernels", "triton",
                    "--length", "20", "--tile", "16", "--dtype", "float64", "--device", device)
    assert result.exit_code == 0, result.output
    assert "OK: the engines agree" in result.stdout
    assert calls  # the engines were given the Triton kernels (before, `pgf check` ran the default ones)


def test_kernels_that_cannot_run_are_a_user_error(monkeypatch, genome, tmp_path):
    monkeypatch.setattr(kernels_module, "triton_unavailable_reason", lambda device: "the Triton kernels need CUDA tensors")
    with pytest.raises(PgfUserError, match="--kernels triton: the Triton kernels need CUDA"):
        checked_kernels("triton", torch.device("cpu"))
    result = invoke("attribute", genome, "--region", "chr1:1-100", "--model", "random-test", "--kernels", "triton",
                    "-o", tmp_path / "x.h5")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "error: --kernels triton: the Triton kernels need CUDA tensors" in result.stderr
    assert not (tmp_path / "x.h5").exists()


def test_unknown_kernels_are_refused(genome, tmp_path):
    result = invoke("attribute", genome, "--region", "chr1:1-100", "--model", "random-test", "--kernels", "cuda",
                    "-o", tmp_path / "x.h5")
    assert result.exit_code == 2 and "--kernels" in result.output
