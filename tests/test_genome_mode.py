"""`pgf attribute --genome`: every sequence between its assembly gaps, in windows; --dry-run; errors."""

from __future__ import annotations

import numpy as np
import pyBigWig
import pytest
from typer.testing import CliRunner

from pgf.cli.app import app
from pgf.io.genome import Genome
from pgf.io.regions import Region
from pgf.workflows.genome_plan import genome_regions

from helpers import random_sequence, write_fasta


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    chr1 = random_sequence(300, 1) + "N" * 150 + random_sequence(200, 2) + "NN" + random_sequence(100, 3)
    records = {"chr1": chr1, "chr2": random_sequence(250, 4), "chrUn_1": "N" * 120 + random_sequence(80, 5)}
    return write_fasta(tmp_path_factory.mktemp("genome") / "g.fa", records)


def test_regions_are_the_stretches_between_assembly_gaps(fasta):
    with Genome(fasta) as genome:
        regions, gaps = genome_regions(genome)
        assert regions == [Region("chr1", 0, 300), Region("chr1", 450, 752), Region("chr2", 0, 250), Region("chrUn_1", 120, 200)]
        assert gaps == 150 + 120  # the 2 N inside chr1's second stretch are no gap
        assert genome_regions(genome, exclude="chrUn.*")[0][-1] == Region("chr2", 0, 250)
        assert genome_regions(genome, chroms=["chr2"])[0] == [Region("chr2", 0, 250)]


def test_genome_wide_bigwig_covers_every_base_but_the_n(fasta, tmp_path):
    out = tmp_path / "g.bw"
    result = invoke("attribute", fasta, "--genome", "--window", 128, "--stride", 64, "--model", "random-test", "-o", out)
    assert result.exit_code == 0, result.output
    with Genome(fasta) as genome, pyBigWig.open(str(out)) as bw:
        assert bw.chroms() == genome.chrom_sizes
        for name, size in genome.chrom_sizes.items():
            values = np.asarray(bw.values(name, 0, size))
            observed = np.array([base in "ACGT" for base in genome.fetch(Region(name, 0, size)).upper()])
            assert (np.isfinite(values) == observed).all(), name


def test_dry_run_prints_the_plan_and_writes_nothing(fasta, tmp_path):
    out = tmp_path / "g.bw"
    result = invoke("attribute", fasta, "--genome", "--exclude-chroms", "chrUn.*", "--window", 128, "--stride", 64,
                    "--model", "random-test", "--dry-run", "-o", out)
    assert result.exit_code == 0, result.output
    assert "dry run: 3 regions on 2 sequences, 852 bp (150 bp in assembly gaps skipped), " in result.stderr
    assert "calibration: 128 bp in " in result.stderr and "nothing was computed or written" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--genome"], "--genome computes windows: give --window W"),
    (["--genome", "--window", 100, "--region", "chr1:1-10"], "--genome computes every sequence; drop --region/--regions"),
    (["--chroms", "chr1", "--region", "chr1:1-10"], "--chroms and --exclude-chroms choose the sequences of --genome"),
    (["--genome", "--window", 100, "--chroms", "chr9"], "--chroms: chr9 not in"),
    (["--genome", "--window", 100, "--exclude-chroms", "chr.*"], "no sequence left to compute"),
    (["--genome", "--window", 100, "--exclude-chroms", "(["], "is not a regular expression"),
])
def test_genome_option_errors(fasta, tmp_path, args, message):
    result = invoke("attribute", fasta, *args, "--model", "random-test", "-o", tmp_path / "x.bw")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []
