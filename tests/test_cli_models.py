"""`pgf models show`, and the model options of `pgf attribute` (--vocab, --target-window, loglik)."""

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pgf.cli.app import app
from pgf.models.registry import build_random_test_model, load_model, save_checkpoint

transformers = pytest.importorskip("transformers")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.MambaConfig(vocab_size=16, hidden_size=16, state_size=8, num_hidden_layers=2, use_cache=False)
    directory = tmp_path_factory.mktemp("hf")
    transformers.MambaForCausalLM(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    path = tmp_path_factory.mktemp("genome") / "g.fa"
    rng = np.random.default_rng(0)
    chr1 = "".join(rng.choice(list("ACGT"), 300))
    chr2 = "".join(rng.choice(list("ACGT"), 200))
    path.write_text(f">chr1\n{chr1}\n>chr2\n{chr2}\n")
    return path


def test_models_show_random_test():
    result = invoke("models", "show", "random-test")
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if line and not line.startswith(("context", "default")))
    model = build_random_test_model()
    assert lines["parameters"].startswith(f"{sum(p.numel() for p in model.parameters()):,} ")
    assert lines["checksum"] == f"sha256:{load_model('random-test').info.checksum}"
    assert lines["trained"].startswith("NO: tiny randomly initialised")
    assert "context length  not stated by the checkpoint" in result.stdout


def test_models_show_checkpoint_and_hf_vocab(tmp_path, hf_dir):
    save_checkpoint(build_random_test_model(), tmp_path / "mine")
    result = invoke("models", "show", tmp_path / "mine")
    assert result.exit_code == 0 and "trained         yes" in result.stdout
    result = invoke("models", "show", hf_dir, "--vocab", "A=7,C=8,G=9,T=10,N=11")
    assert result.exit_code == 0, result.output
    assert "Hugging Face MambaForCausalLM" in result.stdout
    assert "vocabulary      A=7,C=8,G=9,T=10,N=11" in result.stdout
    assert "default target  loglik" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["/nonexistent/model"], "not found"),
        (["HF", "--vocab", "A=7"], "lacks a token id for C, G, T, N"),
        (["HF"], "which token is each base"),
    ],
)
def test_models_show_errors(hf_dir, args, message):
    result = invoke("models", "show", *[hf_dir if a == "HF" else a for a in args])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_attribute_hf_model_loglik_with_vocab_and_window(fasta, hf_dir, tmp_path):
    out = tmp_path / "hf.h5"
    result = invoke(
        "attribute", fasta, "--region", "chr1:11-210", "--model", hf_dir, "--vocab", "A=7,C=8,G=9,T=10,N=11",
        "--target-window", "chr1:101-150", "--device", "cpu", "-o", out,
    )
    assert result.exit_code == 0, result.output
    with h5py.File(out) as h5:
        group = h5["chr1:11-210"]
        assert group.attrs["target"] == "loglik over chr1:101-150"
        gradient = group["gradient"][()]
    # causal model: bases after the window (and after the last base it predicts) have no influence
    assert np.abs(gradient[150:]).max() == 0.0
    assert np.abs(gradient[:140]).max() > 0.0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target-window", "chr1:1-50"], "target window chr1:1-50 does not lie inside region chr1:11-210"),
        (["--target-window", "chr2:20-30"], "does not lie inside region"),
        (["--target", "position:20", "--region", "chr2:1-100"], "give regions on one sequence only"),
        (["--target", "loglik"], "needs a language model"),
    ],
)
def test_attribute_target_errors(fasta, tmp_path, extra, message):
    result = invoke("attribute", fasta, "--region", "chr1:11-210", "--model", "random-test", *extra, "-o", tmp_path / "x.h5")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not list(tmp_path.iterdir())
