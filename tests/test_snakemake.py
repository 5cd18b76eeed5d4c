"""workflow/Snakefile (issue #22): shard -> attribute -> merge -> export equals one pgf attribute run."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pyBigWig
import pytest
from typer.testing import CliRunner

from pgf.cli.app import app
from test_batch_resume import assert_same_groups

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "genome.fa"
# short regions of the sample genome (distinct lengths, so every run batches them alike)
BED = "chr1\t1000\t1300\tfirst\nchr1\t5000\t5420\tsecond\nchr2\t2000\t2350\nchr3\t700\t1210\tfourth\nchr2\t9000\t9280\n"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("snakemake") is None, reason="snakemake is not installed (pip install -e '.[test]')"),
]


def test_snakemake_workflow_equals_one_run(tmp_path):
    fasta = tmp_path / "genome.fa"
    shutil.copy(SAMPLE, fasta)
    shutil.copy(f"{SAMPLE}.fai", f"{fasta}.fai")
    bed = tmp_path / "regions.bed"
    bed.write_text(BED)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"fasta: {fasta}\nregions: {bed}\nmodel: random-test\nmethod: input-x-gradient\nshards: 3\n"
        f"formats: [h5, bigwig]\noutdir: {tmp_path / 'out'}\nname: sample\nextra: '--device cpu'\n"
        f"threads: 1\ngpu: 0\nmem_mb: 2000\npgf: '{sys.executable} -m pgf'\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"), "--configfile", str(config),
         "--cores", "2", "--directory", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["1.h5", "2.h5", "3.h5"]
    for k in (1, 2, 3):  # each job computed what the shard rule planned for it
        planned = [line.split("\t") for line in (out / "shards" / f"{k}.bed").read_text().splitlines()]
        with h5py.File(out / "parts" / f"{k}.h5", "r") as part:
            assert sorted(f"{c}:{int(s) + 1}-{e}" for c, s, e, *_ in planned) == sorted(part)
    assert (out / "benchmarks" / "attribute" / "1.tsv").is_file() and (out / "logs" / "attribute" / "1.jsonl").is_file()

    single_h5, single_bw = tmp_path / "single.h5", tmp_path / "single.bw"
    for path in (single_h5, single_bw):
        result = CliRunner().invoke(app, ["attribute", str(fasta), "--regions", str(bed), "--model", "random-test",
                                          "--device", "cpu", "-o", str(path)])
        assert result.exit_code == 0, result.output
    assert_same_groups(out / "sample.h5", single_h5)
    merged, single = pyBigWig.open(str(out / "sample.bw")), pyBigWig.open(str(single_bw))
    try:
        assert merged.chroms() == single.chroms()
        for chrom in single.chroms():
            assert merged.intervals(chrom) == single.intervals(chrom)
        assert np.isfinite(merged.values("chr1", 1000, 1300)).all()
    finally:
        merged.close()
        single.close()
