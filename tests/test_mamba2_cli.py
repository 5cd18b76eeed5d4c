"""`pgf attribute`, `pgf check` and `pgf models show` on Mamba-2 checkpoints in each of the three formats
(mamba_ssm native, transformers Mamba2ForCausalLM, Caduceus with Mamba-2 mixers) and on
`random-test-mamba2`; the written gradient equals plain autograd on the loaded model."""

from pathlib import Path

import h5py
import pyfaidx
import pytest
import torch
from typer.testing import CliRunner

from helpers import caduceus_mamba2_checkpoint, hf_mamba2_checkpoint, native_mamba2_checkpoint
from pgf.cli.app import app
from pgf.engine.autograd import AutogradEngine
from pgf.models.registry import load_model
from pgf.models.targets import parse_target

GENOME = Path(__file__).resolve().parents[1] / "sample_data" / "genome.fa"
REGION = "chr1:1001-1300"
WRITERS = {
    "native": lambda d: native_mamba2_checkpoint(d, d_intermediate=40),
    "transformers": hf_mamba2_checkpoint,
    "caduceus": lambda d: caduceus_mamba2_checkpoint(d, layout="nested"),
}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module", params=list(WRITERS))
def checkpoint(request, tmp_path_factory):
    return WRITERS[request.param](tmp_path_factory.mktemp(request.param))[0]


def region_onehot() -> torch.Tensor:
    sequence = str(pyfaidx.Fasta(str(GENOME))["chr1"][1000:1300]).upper()
    x = torch.zeros(1, len(sequence), 4)
    for i, base in enumerate(sequence):
        if base in "ACGT":
            x[0, i, "ACGT".index(base)] = 1
    return x


def test_attribute_writes_the_autograd_gradient(checkpoint, tmp_path):
    out = tmp_path / "out.h5"
    result = invoke("attribute", GENOME, "--region", REGION, "--model", checkpoint, "--device", "cpu", "-o", out)
    assert result.exit_code == 0, result.output
    with h5py.File(out) as h5:
        gradient = torch.from_numpy(h5[REGION]["gradient"][()]).float()
    model = load_model(str(checkpoint)).model
    expected = AutogradEngine().gradient(model, region_onehot(), parse_target(None, model).readout([1000])).gradient[0]
    assert gradient.shape == (300, 4)
    assert float((gradient - expected).abs().max() / expected.abs().max()) <= 1e-5


def test_check_agrees(checkpoint):
    result = invoke("check", GENOME, "--region", REGION, "--model", checkpoint, "--length", 300, "--tile", 37,
                    "--dtype", "float64")
    assert result.exit_code == 0, result.output
    assert float(result.stdout.split("max relative")[1].split()[0]) <= 1e-10
    assert result.stdout.rstrip().endswith("OK: the engines agree")


def test_models_show_prints_the_mixer(checkpoint):
    result = invoke("models", "show", checkpoint)
    assert result.exit_code == 0, result.output
    assert "Mamba-2 (SSD): 4 heads × 8, state 8, " in result.stdout


def test_random_test_mamba2_everywhere(tmp_path):
    result = invoke("models", "show", "random-test-mamba2")
    assert result.exit_code == 0, result.output
    assert "mixer           Mamba-2 (SSD): 4 heads × 8, state 8, 2 groups, d_mlp 16" in result.stdout
    assert "trained         NO: tiny randomly initialised" in result.stdout
    assert "default target  loglik" in result.stdout
    out = tmp_path / "r.h5"
    result = invoke("attribute", GENOME, "--region", REGION, "--model", "random-test-mamba2", "--device", "cpu", "-o", out)
    assert result.exit_code == 0, result.output
    with h5py.File(out) as h5:
        assert h5.attrs["model_id"] == "random-test-mamba2"
        assert abs(h5[REGION]["gradient"][()]).max() > 0
