"""`pgf attribute` with the interpretation methods (workflow level): datasets, attributes, API numbers."""

import h5py
import numpy as np
import pytest
import torch

import pgf
from pgf.errors import PgfUserError
from pgf.io.onehot import one_hot
from pgf.workflows.attribute import AttributeRequest, run_attribute
from pgf.workflows.interpret import MethodOptions

from helpers import random_sequence, write_fasta

SEQUENCE = random_sequence(120, 41)


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    return write_fasta(tmp_path_factory.mktemp("attr") / "g.fa", {"chr1": SEQUENCE, "chr2": SEQUENCE[::-1]})


def request(fasta, out, method, regions=("chr1:11-50", "chr1:61-100"), **options):
    return AttributeRequest(fasta=fasta, output=out, regions=list(regions), model="random-test", method=method,
                            dtype="float64", device="cpu", method_options=MethodOptions(method, **options) if options else None)


def test_attribute_integrated_gradients(fasta, tmp_path):
    out = tmp_path / "ig.h5"
    run_attribute(request(fasta, out, "integrated-gradients", baseline="shuffle", n_baselines=2, steps=8, seed=3))
    model = pgf.load_model("random-test", dtype=torch.float64)
    x = torch.from_numpy(np.stack([one_hot(SEQUENCE[10:50]), one_hot(SEQUENCE[60:100])])).double()
    api = pgf.integrated_gradients(model, x, region_starts=[10, 60], baseline="shuffle", n_baselines=2, steps=8, seed=3)
    with h5py.File(out) as h5:
        for i, name in enumerate(["chr1:11-50", "chr1:61-100"]):
            group = h5[name]
            np.testing.assert_allclose(group["integrated_gradients"][:], api.attributions[i].numpy(), rtol=1e-5, atol=1e-8)
            np.testing.assert_allclose(group["score"][:], api.attributions[i].sum(-1).numpy(), rtol=1e-5, atol=1e-8)
            attrs = group["integrated_gradients"].attrs
            assert attrs["completeness_error"] == pytest.approx(float(api.completeness_error[i]))
            assert attrs["baseline"] == "shuffle" and attrs["steps"] == 8 and attrs["n_baselines"] == 2
            assert group.attrs["method"] == "integrated-gradients"


def test_attribute_ism_and_rc_average(fasta, tmp_path):
    out = tmp_path / "ism.h5"
    run_attribute(request(fasta, out, "ism", regions=["chr1:11-50"], ism_region="chr1:21-30", rc_average=True))
    model = pgf.load_model("random-test", dtype=torch.float64)
    x = torch.from_numpy(one_hot(SEQUENCE[10:50])).double()
    api = pgf.ism(model, x, region_starts=[10], window=(10, 20), rc_average=True)
    with h5py.File(out) as h5:
        group = h5["chr1:11-50"]
        np.testing.assert_allclose(group["ism"][:], api.ism[0].numpy(), rtol=1e-5, atol=1e-8, equal_nan=True)
        assert group["ism"].attrs["window_start"] == 20 and group["ism"].attrs["rc_average"]
        assert np.isnan(group["score"][:10]).all() and np.isfinite(group["score"][10:20]).all()
    with pytest.raises(PgfUserError, match="does not lie inside"):  # the second region does not hold the window
        run_attribute(request(fasta, tmp_path / "bad.h5", "ism", ism_region="chr1:61-70"))


def test_attribute_refusals(fasta, tmp_path):
    with pytest.raises(PgfUserError, match="--window"):
        run_attribute(AttributeRequest(fasta=fasta, output=tmp_path / "w.h5", regions=["chr1:1-100"], model="random-test",
                                       method="ism", window=50))
    with pytest.raises(PgfUserError, match="limit"):
        run_attribute(AttributeRequest(fasta=fasta, output=tmp_path / "l.h5", regions=["chr1:1-100"], model="random-test",
                                       method="ism", method_options=MethodOptions("ism", ism_max_positions=50)))
    with pytest.raises(PgfUserError, match="baseline"):
        run_attribute(request(fasta, tmp_path / "b.h5", "integrated-gradients", baseline="random"))
