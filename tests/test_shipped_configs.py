"""Every file in configs/ runs as shipped (small settings only where a full run takes too long),
so an example cannot break unnoticed. A new config needs a test here."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyBigWig
import pytest
from pyfaidx import Fasta

ROOT = Path(__file__).resolve().parents[1]
# each config, and the test that runs it
COVERED = {
    "snakemake.yaml": "tests/test_shipped_configs.py::test_shipped_snakemake_config_runs_as_shipped",
    "snakemake_genome.yaml": "tests/test_shipped_configs.py::test_shipped_genome_config_gives_one_genome_wide_bigwig",
    "sample_genome.json": "tests/test_simulation.py::test_sample_data_regenerates_from_its_config",
    "builtin_recipe_fast.json": "tests/test_finalize_builtin.py (the recipe's phases, shortened)",
}


def test_every_config_has_a_test():
    assert sorted(p.name for p in (ROOT / "configs").iterdir() if p.is_file()) == sorted(COVERED)
    for where in COVERED.values():
        path, _, name = where.partition("::")
        path = path.split(" ")[0]
        text = (ROOT / path).read_text()
        assert not name or f"def {name}(" in text, where


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("snakemake") is None, reason="snakemake is not installed (pip install -e '.[test]')")
def test_shipped_snakemake_config_runs_as_shipped(tmp_path):
    """configs/snakemake.yaml on the sample data as it ships (its regions overlap: the bigWig
    combines them), run from a folder that holds the sample data like the repository does."""
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"),
         "--configfile", str(ROOT / "configs" / "snakemake.yaml"), "--cores", "2", "--directory", str(tmp_path)],
        capture_output=True, text=True, timeout=900, env=environment,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    regions = [line.split("\t") for line in (ROOT / "sample_data" / "regions.bed").read_text().splitlines() if line.strip()]
    genome = Fasta(str(ROOT / "sample_data" / "genome.fa"))
    with pyBigWig.open(str(tmp_path / "pgf_out" / "sample.bw")) as bw:
        for chrom, start, end, *_ in regions:
            values = np.asarray(bw.values(chrom, int(start), int(end)))
            observed = np.array([base in "ACGT" for base in str(genome[chrom][int(start):int(end)]).upper()])
            assert (np.isfinite(values) == observed).all(), (chrom, start, end)  # a value at every base but N


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("snakemake") is None, reason="snakemake is not installed (pip install -e '.[test]')")
def test_shipped_genome_config_gives_one_genome_wide_bigwig(tmp_path):
    """configs/snakemake_genome.yaml with the tiny random-test model (the only change: the built-in
    model would take minutes): one bigWig with a value at every base of the sample genome but its N."""
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"),
         "--configfile", str(ROOT / "configs" / "snakemake_genome.yaml"), "--config", "model=random-test",
         "--cores", "2", "--directory", str(tmp_path)],
        capture_output=True, text=True, timeout=900, env=environment,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    genome = Fasta(str(ROOT / "sample_data" / "genome.fa"))
    with pyBigWig.open(str(tmp_path / "pgf_genome" / "genome.bw")) as bw:
        assert bw.chroms() == {name: len(genome[name]) for name in genome.keys()}
        for name in genome.keys():
            values = np.asarray(bw.values(name, 0, len(genome[name])))
            observed = np.array([base in "ACGT" for base in str(genome[name][:]).upper()])
            assert (np.isfinite(values) == observed).all(), name
