"""bedGraph/bigWig tracks of overlapping regions: one value per base by a stated rule (`--overlap`)."""

import h5py
import numpy as np
import pyBigWig
import pytest
from typer.testing import CliRunner

from pgf.cli.app import app
from pgf.errors import OutputError
from pgf.io.overlaps import TrackSource, one_value_per_base
from pgf.io.regions import Region

from helpers import random_sequence, write_fasta

NAN = np.nan


def source(chrom, start, values):
    values = np.asarray(values, dtype=np.float32)
    return TrackSource(Region(chrom, start, start + len(values)), lambda: [values[:2], values[2:]])


def flat(items):
    return [(chrom, start, np.concatenate([np.asarray(c, dtype=np.float64) for c in chunks]).tolist())
            for chrom, start, chunks in items]


SOURCES = [source("chr1", 0, [1, 2, 3, 4]), source("chr1", 2, [10, NAN, 30]), source("chr1", 4, [7, 8]),
           source("chr1", 9, [5]), source("chr2", 0, [1, 1])]


@pytest.mark.parametrize("rule, merged", [
    ("mean", [1, 2, 6.5, 4, 18.5, 8]),   # base 3: only the first region has a value; base 4: (30 + 7) / 2
    ("max", [1, 2, 10, 4, 30, 8]),
    ("first", [1, 2, 3, 4, 30, 8]),      # base 4: the first region that covers it with a value
])
def test_overlapping_regions_get_one_value_per_base(rule, merged):
    out = flat(one_value_per_base(SOURCES, rule))
    # regions [0, 4), [2, 5), [4, 6) form one group; [9, 10) and chr2 stream through unchanged
    assert [(c, s) for c, s, _ in out] == [("chr1", 0), ("chr1", 9), ("chr2", 0)]
    np.testing.assert_allclose(out[0][2], merged, rtol=1e-6)
    assert out[1][2] == [5] and out[2][2] == [1, 1]


def test_touching_regions_do_not_overlap_and_error_refuses_overlaps():
    touching = [source("chr1", 0, [1, 2]), source("chr1", 2, [3])]
    assert flat(one_value_per_base(touching, "error")) == [("chr1", 0, [1, 2]), ("chr1", 2, [3])]
    with pytest.raises(OutputError, match="overlap"):
        list(one_value_per_base(SOURCES, "error"))
    with pytest.raises(OutputError, match="unknown overlap rule 'median'"):
        list(one_value_per_base(SOURCES, "median"))


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    return write_fasta(tmp_path_factory.mktemp("ov") / "g.fa", {"chr1": random_sequence(300, 8)})


def test_attribute_and_merge_combine_overlapping_regions(genome, tmp_path):
    """The bigWig of two overlapping regions holds, per base, the mean (default) or max of the
    regions' scores as the HDF5 output stores them; the bedGraph says which rule it used."""
    regions = ["-r", "chr1:11-110", "-r", "chr1:61-160"]
    common = ["--model", "random-test", "--dtype", "float64", "-q"]
    assert invoke("attribute", genome, *regions, *common, "-o", tmp_path / "x.h5").exit_code == 0
    with h5py.File(tmp_path / "x.h5") as h5:
        first, second = (h5[name]["score"][()].astype(np.float64) for name in ("chr1:11-110", "chr1:61-160"))
    mean, largest = np.full(150, np.nan), np.full(150, np.nan)
    mean[:50], mean[100:] = first[:50], second[50:]
    mean[50:100] = (first[50:] + second[:50]) / 2
    largest[:50], largest[100:] = first[:50], second[50:]
    largest[50:100] = np.maximum(first[50:], second[:50])

    result = invoke("attribute", genome, *regions, *common, "-o", tmp_path / "x.bw")
    assert result.exit_code == 0, result.output
    with pyBigWig.open(str(tmp_path / "x.bw")) as bw:
        np.testing.assert_allclose(bw.values("chr1", 10, 160), mean, rtol=1e-6)
    assert invoke("merge", tmp_path / "x.h5", "--overlap", "max", "-o", tmp_path / "m.bw").exit_code == 0
    with pyBigWig.open(str(tmp_path / "m.bw")) as bw:
        np.testing.assert_allclose(bw.values("chr1", 10, 160), largest, rtol=1e-6)
    assert invoke("merge", tmp_path / "x.h5", "--overlap", "first", "-o", tmp_path / "f.bedgraph").exit_code == 0
    assert "# overlap: first\n" in (tmp_path / "f.bedgraph").read_text()
    refused = invoke("merge", tmp_path / "x.h5", "--overlap", "error", "-o", tmp_path / "e.bw")
    assert refused.exit_code == 2 and "overlap" in refused.stderr and not (tmp_path / "e.bw").exists()
