"""The Python API: lazy import, and the same numbers as the CLI and the workflows."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import pgf
from pgf.cli.app import app
from pgf.engine import get_engine
from pgf.io.onehot import one_hot
from pgf.models.targets import parse_target
from pgf.workflows.interpret import MethodOptions, compute_method

from helpers import random_sequence, write_fasta

SEQUENCE = random_sequence(60, 21)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    return write_fasta(tmp_path_factory.mktemp("api") / "g.fa", {"chr1": SEQUENCE})


def test_import_pgf_stays_light():
    code = "import sys, pgf; print('torch' in sys.modules, 'pgf.api' in sys.modules, callable(pgf.ism))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True"]
    with pytest.raises(AttributeError):
        pgf.no_such_function  # noqa: B018


def test_ism_equals_cli_effect_exact(fasta, tmp_path):
    """ISM at every alternative of positions 21-23 = `pgf effect --mode exact` summed over the target (the region)."""
    positions = [21, 22, 23]
    variants = [f"chr1:{p}:{SEQUENCE[p - 1]}>{b}" for p in positions for b in "ACGT" if b != SEQUENCE[p - 1]]
    out = tmp_path / "e.h5"
    args = ["effect", fasta, "--region", "chr1:1-60", "--model", "random-test", "--mode", "exact", "--dtype", "float64", "-o", out, "-q"]
    result = invoke(*args, *[a for v in variants for a in ("--variant", v)])
    assert result.exit_code == 0, result.output
    model = pgf.load_model("random-test", dtype=torch.float64)
    x = torch.from_numpy(one_hot(SEQUENCE)).double()
    ism = pgf.ism(model, x, window=(20, 23)).ism[0]
    with h5py.File(out) as h5:
        for v in variants:
            pos, alt = int(v.split(":")[1]), v[-1]
            expected = float(h5[v]["exact"][:, 0].astype(np.float64).sum())
            assert float(ism[pos - 1, "ACGT".index(alt)]) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    effects = pgf.effects(model, x, [(int(v.split(":")[1]) - 1, v[-1]) for v in variants])
    with h5py.File(out) as h5:
        for n, v in enumerate(variants):
            np.testing.assert_allclose(effects[n].numpy(), h5[v]["exact"][:], rtol=1e-5, atol=1e-7)


def test_gradients_equal_cli_attribute(fasta, tmp_path):
    out = tmp_path / "a.h5"
    result = invoke("attribute", fasta, "--region", "chr1:11-50", "--model", "random-test", "--target-window", "chr1:21-30",
                    "--dtype", "float64", "--method", "gradient", "-o", out, "-q")
    assert result.exit_code == 0, result.output
    model = pgf.load_model("random-test", dtype=torch.float64)
    x = torch.from_numpy(one_hot(SEQUENCE[10:50])).double()
    api = pgf.gradients(model, x, target_window=(20, 30), region_starts=[10])
    with h5py.File(out) as h5:
        group = h5["chr1:11-50"]
        np.testing.assert_allclose(group["gradient"][:], api.gradient[0].numpy(), rtol=1e-6, atol=1e-9)
        assert group.attrs["target_value"] == pytest.approx(float(api.target_value[0]), rel=1e-12)


def test_compute_method_equals_api():
    """The attribute workflow's entry point gives the API's numbers (and its datasets)."""
    model = pgf.load_model("random-test", dtype=torch.float64)
    x = torch.from_numpy(np.stack([one_hot(SEQUENCE[:40]), one_hot(SEQUENCE[20:])])).double()
    target = parse_target(None, model).with_window("chr1", 25, 35)
    engine = get_engine("pgf", tile=16)
    ig = compute_method(engine, model, x, target, [0, 20], MethodOptions("integrated-gradients", baseline="shuffle", n_baselines=2, steps=8, seed=5))
    api = pgf.integrated_gradients(model, x, target_window=(25, 35), region_starts=[0, 20], baseline="shuffle", n_baselines=2, steps=8, seed=5)
    for i in range(2):
        np.testing.assert_allclose(ig.extras[i]["integrated_gradients"], api.attributions[i].numpy(), rtol=1e-6, atol=1e-9)
        assert ig.extra_attributes[i]["integrated_gradients"]["completeness_error"] == pytest.approx(float(api.completeness_error[i]))
        np.testing.assert_allclose(ig.score[i], api.attributions[i].sum(-1).numpy(), rtol=1e-5, atol=1e-8)
    ism = compute_method(engine, model, x, target, [0, 20], MethodOptions("ism", ism_window=(26, 30)))
    api_ism = pgf.ism(model, x[1:], target_window=(25, 35), region_starts=[20], window=(6, 10))
    np.testing.assert_allclose(ism.extras[1]["ism"], api_ism.ism[0].numpy(), rtol=1e-6, atol=1e-9, equal_nan=True)
    assert ism.extra_attributes[1]["ism"]["window_start"] == 26
    assert np.isfinite(ism.extra_attributes[0]["ism"]["taylor_ism_correlation"])
    eg = compute_method(engine, model, x, target, [0, 20], MethodOptions("expected-gradients", samples=4, seed=1, rc_average=True))
    api_eg = pgf.expected_gradients(model, x, target_window=(25, 35), region_starts=[0, 20], samples=4, seed=1, rc_average=True)
    np.testing.assert_allclose(eg.extras[0]["expected_gradients"], api_eg.attributions[0].numpy(), rtol=1e-6, atol=1e-9)
    plain = compute_method(engine, model, x, target, [0, 20], MethodOptions("hypothetical", rc_average=True))
    api_rc = pgf.gradients(model, x, target_window=(25, 35), region_starts=[0, 20], rc_average=True)
    np.testing.assert_allclose(plain.gradient[1], api_rc.gradient[1].numpy(), rtol=1e-6, atol=1e-9)
    assert "hypothetical" in plain.extras[1]


def test_cli_attribute_methods_equal_api(fasta, tmp_path):
    model = pgf.load_model("random-test", dtype=torch.float64)
    x = torch.from_numpy(one_hot(SEQUENCE[10:50])).double()
    common = ["attribute", fasta, "--region", "chr1:11-50", "--model", "random-test", "--dtype", "float64", "-q"]
    ig_out, ism_out = tmp_path / "ig.h5", tmp_path / "ism.h5"
    result = invoke(*common, "--method", "integrated-gradients", "--baseline", "shuffle", "--n-baselines", 2, "--steps", 8,
                    "--seed", 3, "-o", ig_out)
    assert result.exit_code == 0, result.output
    result = invoke(*common, "--method", "ism", "--ism-window", "chr1:21-30", "--rc-average", "-o", ism_out)
    assert result.exit_code == 0, result.output
    ig = pgf.integrated_gradients(model, x, region_starts=[10], baseline="shuffle", n_baselines=2, steps=8, seed=3)
    ism = pgf.ism(model, x, region_starts=[10], window=(10, 20), rc_average=True)
    with h5py.File(ig_out) as h5:
        np.testing.assert_allclose(h5["chr1:11-50"]["integrated_gradients"][:], ig.attributions[0].numpy(), rtol=1e-5, atol=1e-8)
        assert h5["chr1:11-50"]["integrated_gradients"].attrs["completeness_error"] == pytest.approx(float(ig.completeness_error[0]))
    with h5py.File(ism_out) as h5:
        np.testing.assert_allclose(h5["chr1:11-50"]["ism"][:], ism.ism[0].numpy(), rtol=1e-5, atol=1e-8, equal_nan=True)
    refused = invoke(*common, "--method", "ism", "--ism-max-positions", 10, "-o", tmp_path / "no.h5")
    assert refused.exit_code == 2 and "limit" in refused.output
