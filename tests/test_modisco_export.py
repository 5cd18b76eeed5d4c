"""`pgf export modisco`: what modisco-lite reads, row i = BED line i, clear errors."""

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from pgf.cli.app import app

from helpers import random_sequence, write_fasta

SEQUENCE = random_sequence(300, 31)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def modisco_lite_load(ohe_path, hyp_path, window):
    """As modisco-lite's `modisco motifs` loads .npz inputs: arr_0, (N, 4, L), central W positions."""
    sequences = np.load(ohe_path)["arr_0"]
    attributions = np.load(hyp_path)["arr_0"]
    assert sequences.shape == attributions.shape and sequences.shape[1] == 4
    assert window % 2 == 0 and window <= sequences.shape[2]
    center = sequences.shape[2] // 2
    start, end = center - window // 2, center + window // 2
    sequences = sequences[:, :, start:end].transpose(0, 2, 1)
    hypothetical = attributions[:, :, start:end].transpose(0, 2, 1)
    return sequences, hypothetical, sequences * hypothetical


@pytest.fixture(scope="module")
def attributions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("modisco")
    fasta = write_fasta(folder / "g.fa", {"chr1": SEQUENCE})
    out = {}
    for method in ("hypothetical", "input-x-gradient"):
        path = folder / f"{method}.h5"
        result = invoke("attribute", fasta, "--region", "chr1:11-50", "--region", "chr1:101-140", "--region", "chr1:201-250",
                        "--model", "random-test", "--method", method, "-o", path, "-q")
        assert result.exit_code == 0, result.output
        out[method] = path
    return out


def test_export_round_trips_through_a_modisco_reader(attributions, tmp_path):
    prefix = tmp_path / "m"
    result = invoke("export", "modisco", attributions["hypothetical"], "-o", prefix, "--window", 30)
    assert result.exit_code == 0, result.output
    assert "modisco motifs -s" in result.output
    sequences, hypothetical, contributions = modisco_lite_load(f"{prefix}.ohe.npz", f"{prefix}.hyp.npz", 30)
    assert sequences.shape == (3, 30, 4) and np.load(f"{prefix}.ohe.npz")["arr_0"].dtype == np.float32
    bed = [line.split("\t") for line in open(f"{prefix}.bed").read().splitlines()]
    assert len(bed) == 3
    with h5py.File(attributions["hypothetical"]) as h5:
        for i, row in enumerate(bed):
            chrom, start, end = row[0], int(row[1]), int(row[2])
            assert end - start == 30
            assert "".join("ACGT"[b] for b in sequences[i].argmax(1)) == SEQUENCE[start:end]  # ACGT order, genome coordinates
            group = next(g for g in h5.values() if g.attrs["start"] <= start and end <= g.attrs["end"])
            assert (start + end) // 2 == (group.attrs["start"] + group.attrs["end"]) // 2  # centred on the region
            offset = start - group.attrs["start"]
            np.testing.assert_array_equal(hypothetical[i], group["hypothetical"][offset : offset + 30])
        np.testing.assert_allclose(hypothetical.sum(axis=2), 0, atol=1e-5)
    assert np.allclose(contributions.sum(axis=2), (sequences * hypothetical).sum(axis=2))


def test_hypothetical_computed_from_gradient_when_absent(attributions, tmp_path):
    for name, path in attributions.items():
        assert invoke("export", "modisco", path, "-o", tmp_path / name, "-w", 20).exit_code == 0
    a = np.load(tmp_path / "hypothetical.hyp.npz")["arr_0"]
    b = np.load(tmp_path / "input-x-gradient.hyp.npz")["arr_0"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_peak_centre_and_errors(attributions, tmp_path):
    prefix = tmp_path / "p"
    assert invoke("export", "modisco", attributions["hypothetical"], "-o", prefix, "-w", 10, "--center", "peak").exit_code == 0
    bed = [line.split("\t") for line in open(f"{prefix}.bed").read().splitlines()]
    with h5py.File(attributions["hypothetical"]) as h5:
        for row in bed:
            start, end = int(row[1]), int(row[2])
            group = next(g for g in h5.values() if g.attrs["start"] <= start and end <= g.attrs["end"])
            peak = group.attrs["start"] + int(np.nanargmax(np.abs(group["score"][:])))
            assert start <= peak < end
    again = invoke("export", "modisco", attributions["hypothetical"], "-o", prefix, "-w", 10)
    assert again.exit_code == 2 and "already exists" in again.output
    odd = invoke("export", "modisco", attributions["hypothetical"], "-o", tmp_path / "odd", "-w", 31)
    assert odd.exit_code == 2 and "even" in odd.output
    long = invoke("export", "modisco", attributions["hypothetical"], "-o", tmp_path / "long", "-w", 42)
    assert long.exit_code == 2 and "shorter than the window" in long.output
    mixed = invoke("export", "modisco", attributions["hypothetical"], "-o", tmp_path / "mixed")
    assert mixed.exit_code == 2 and "--window" in mixed.output
    assert not list(tmp_path.glob("odd*")) and not list(tmp_path.glob("long*"))
