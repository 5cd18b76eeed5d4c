"""`pgf effect` end to end: outputs, numbers against direct computations, and user errors."""

from pathlib import Path

import h5py
import numpy as np
import pyBigWig
import pytest
import torch
from torch.func import jvp
from typer.testing import CliRunner

from helpers import random_sequence, write_fasta
from pgf.cli.app import app
from pgf.io.onehot import one_hot
from pgf.models.registry import load_model

SEQUENCE = random_sequence(600, 11)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def fasta(tmp_path_factory) -> Path:
    return write_fasta(tmp_path_factory.mktemp("g") / "g.fa", {"chr1": SEQUENCE, "chr2": random_sequence(100, 12)})


def snv(pos, alt=None):
    ref = SEQUENCE[pos - 1]
    alt = alt or next(b for b in "ACGT" if b != ref)
    return f"chr1:{pos}:{ref}>{alt}"


def vcf(tmp_path, lines):
    path = tmp_path / "v.vcf"
    path.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\n" + "".join(f"{line}\n" for line in lines))
    return path


def test_effect_numbers_match_direct_computation(fasta, tmp_path):
    first, second = snv(250), snv(180)
    out = tmp_path / "e.h5"
    result = invoke("effect", fasta, "--region", "chr1:101-400", "--variant", first, "--variant", second,
                    "--model", "random-test", "--mode", "both", "--dtype", "float64", "--tile", 64, "--device", "cpu",
                    "--track", tmp_path / "e.bw", "--track-variant", first, "-o", out)
    assert result.exit_code == 0, result.output
    model = load_model("random-test", dtype=torch.float64).model
    x = torch.from_numpy(one_hot(SEQUENCE[100:400])).double().unsqueeze(0)
    with h5py.File(out) as h5:
        assert h5.attrs["mode"] == "both" and h5.attrs["channels"] == "signal"
        assert sorted(h5) == sorted([first, second, "reference_output"])
        with torch.no_grad():
            np.testing.assert_allclose(h5["reference_output"][()], model(x)["track"][0].numpy(), rtol=1e-6, atol=1e-7)
        for name in (first, second):
            group = h5[name]
            pos, ref, alt = group.attrs["position"], group.attrs["ref"], group.attrs["alt"]
            v = torch.zeros_like(x)
            v[0, pos - 101, "ACGT".index(alt)], v[0, pos - 101, "ACGT".index(ref)] = 1.0, -1.0
            _, expected_linear = jvp(lambda z: model(z)["track"], (x,), (v,))
            with torch.no_grad():
                expected_exact = model(x + v)["track"] - model(x)["track"]
            np.testing.assert_allclose(group["linear"][()], expected_linear[0].detach().numpy(), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(group["exact"][()], expected_exact[0].numpy(), rtol=1e-5, atol=1e-7)
            if name == first:
                track_values = group["linear"][()][:, 0]
    bw = pyBigWig.open(str(tmp_path / "e.bw"))
    np.testing.assert_array_equal(np.array(bw.values("chr1", 100, 400), dtype=np.float32), track_values)
    rows = [line.split("\t") for line in (tmp_path / "e.tsv").read_text().splitlines() if not line.startswith("#")]
    header, body = rows[0], {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert header[:6] == ["variant", "id", "chrom", "pos", "ref", "alt"] and "exact_max_abs_pos" in header
    assert float(body[first]["linear_sum"]) == pytest.approx(float(track_values.sum()), rel=1e-5)
    assert int(body[first]["linear_max_abs_pos"]) == 101 + int(np.argmax(np.abs(track_values)))


def test_vcf_outside_mismatch_and_impulse(fasta, tmp_path):
    ref_300 = SEQUENCE[299]
    all_alts = ",".join(b for b in "ACGT" if b != ref_300)  # a multi-allelic record: 3 SNVs
    wrong_ref = next(b for b in "ACGT" if b != SEQUENCE[199])
    alt_200 = next(b for b in "ACGT" if b != wrong_ref)
    path = vcf(tmp_path, [f"chr1\t300\trsA\t{ref_300}\t{all_alts}", "chr2\t5\trsB\tA\tC", f"chr1\t200\trsC\t{wrong_ref}\t{alt_200}"])
    base = ["effect", fasta, "--region", "chr1:101-400", "--vcf", path, "--model", "random-test", "-o"]
    result = invoke(*base, tmp_path / "a.h5")
    assert result.exit_code == 2 and "does not match the FASTA base" in result.stderr and "--skip-mismatch" in result.stderr
    assert not (tmp_path / "a.h5").exists()
    result = invoke(*base, tmp_path / "b.h5", "--skip-mismatch", "--impulse", "350:G")
    assert result.exit_code == 0, result.output
    assert "1 variant(s) outside region chr1:101-400 were not computed: chr2:5:A>C (rsB)" in result.stderr
    assert "skipped chr1:200:" in result.stderr
    with h5py.File(tmp_path / "b.h5") as h5:
        names = sorted(k for k in h5 if k != "reference_output")
    assert len(names) == 4 and "impulse:chr1:350:G" in names  # 3 ALT alleles of rsA + the impulse


@pytest.mark.parametrize(
    "args, message",
    [
        (["--variant", "chr1:150:AT>G"], "is an indel"),
        ([], "no variant to compute"),
        (["--variant", "chr2:5:A>C"], "no variant to compute"),
        (["--impulse", "50"], "inside chr1:101-400"),
        (["--variant", snv(150), "--channel", "dnase"], "unknown channel 'dnase'"),
        (["--variant", snv(150), "--track", "TMP/t.h5"], "one variant's track as bedGraph or bigWig"),
        (["--variant", snv(150), "--track", "TMP/t.bw", "--track-variant", "rs404"], "none of the computed variants"),
    ],
)
def test_effect_user_errors(fasta, tmp_path, args, message):
    args = [str(a).replace("TMP", str(tmp_path)) for a in args]
    result = invoke("effect", fasta, "--region", "chr1:101-400", "--model", "random-test", *args, "-o", tmp_path / "x.h5")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not [p for p in tmp_path.iterdir()]


def test_effect_output_must_be_hdf5_and_not_overwritten(fasta, tmp_path):
    result = invoke("effect", fasta, "--region", "chr1:101-400", "--variant", snv(150), "--model", "random-test", "-o", tmp_path / "x.bw")
    assert result.exit_code == 2 and "HDF5" in result.stderr
    (tmp_path / "x.tsv").write_text("old")
    result = invoke("effect", fasta, "--region", "chr1:101-400", "--variant", snv(150), "--model", "random-test", "-o", tmp_path / "x.h5")
    assert result.exit_code == 2 and "x.tsv already exists" in result.stderr
    assert (tmp_path / "x.tsv").read_text() == "old" and not (tmp_path / "x.h5").exists()
