"""The files `pgf effect` writes (pgf.io.effect_writers), without a model."""

import h5py
import numpy as np
import pytest

from pgf.errors import OutputError
from pgf.io.effect_writers import EffectResult, Perturbation, write_effect_hdf5, write_effect_summary, write_effect_track
from pgf.io.regions import Region
from pgf.io.tracks import RunMetadata
from pgf.io.variants import Variant

REGION = Region("chr1", 100, 110)
SIZES = {"chr1": 1000}


def results(with_exact: bool = True) -> list[EffectResult]:
    rng = np.random.default_rng(0)
    variant = Variant("chr1", 104, "A", "G", "rs1")
    snv = Perturbation("chr1:105:A>G", 104, 0, 2, variant)
    impulse = Perturbation("impulse:chr1:108:T", 107, None, 3)
    return [
        EffectResult(p, rng.normal(size=(10, 2)), rng.normal(size=(10, 2)) if with_exact else None) for p in (snv, impulse)
    ]


def test_hdf5_layout(tmp_path):
    path = tmp_path / "e.h5"
    baseline = np.arange(20, dtype=np.float64).reshape(10, 2)
    computed = results()
    write_effect_hdf5(path, False, {"region": str(REGION), "mode": "both"}, baseline, computed)
    with h5py.File(path) as h5:
        assert dict(h5.attrs) == {"region": "chr1:101-110", "mode": "both"}
        np.testing.assert_array_equal(h5["reference_output"][()], baseline.astype(np.float32))
        assert sorted(h5) == ["chr1:105:A>G", "impulse:chr1:108:T", "reference_output"]
        snv = h5["chr1:105:A>G"]
        assert dict(snv.attrs) == {"position": 105, "chrom": "chr1", "ref": "A", "alt": "G", "id": "rs1"}
        np.testing.assert_array_equal(snv["exact"][()], computed[0].exact.astype(np.float32))
        assert dict(h5["impulse:chr1:108:T"].attrs) == {"position": 108, "impulse_base": "T"}
    with pytest.raises(OutputError):
        write_effect_hdf5(path, False, {}, baseline, computed)  # exists, no force


def test_summary_text(tmp_path):
    path = tmp_path / "e.tsv"
    computed = results(with_exact=False)
    write_effect_summary(path, False, REGION, computed, 1, ["a", "b"])
    lines = path.read_text().splitlines()
    assert lines[:2] == ["# channel: b; positions 1-based", "variant\tid\tchrom\tpos\tref\talt\tlinear_sum\tlinear_max_abs\tlinear_max_abs_pos"]
    values = computed[1].linear[:, 1]
    peak = int(np.argmax(np.abs(values)))
    assert lines[3] == "\t".join(
        ["impulse:chr1:108:T", ".", "chr1", "108", ".", "T", f"{values.sum():.9g}", f"{abs(values[peak]):.9g}", str(101 + peak)]
    )
    assert lines[2].startswith("chr1:105:A>G\trs1\tchr1\t105\tA\tG\t")


def test_track_names_the_perturbation(tmp_path):
    path = tmp_path / "e.bedgraph"
    meta = RunMetadata("effect", "model output 'tracks'", "random-test", "abc", False, "pgf-tangent", "float32", "9.9")
    computed = results()
    write_effect_track(path, "bedgraph", False, SIZES, REGION, computed[0], 1, ["a", "b"], meta)
    lines = path.read_text().splitlines()
    assert lines[0] == (
        'track type=bedGraph name="pgf effect chr1:105:A>G" '
        "description=\"pgf 9.9 effect of chr1:105:A>G on model output 'tracks' b, model random-test\""
    )
    first = lines[1].split("\t")
    assert first[:3] == ["chr1", "100", "101"] and float(first[3]) == pytest.approx(computed[0].linear[0, 1], rel=1e-6)
