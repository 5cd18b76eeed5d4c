"""Attribution files for the `pgf plot` / `pgf report` tests (tests/test_plot.py, test_report*.py).

`model_attributions` runs the built-in model once per test session (two short regions of the
sample genome, around chr1_promoter_9 and chr1_enhancer_5, with the hypothetical method);
`synthetic_attributions` writes a file of given scores in no time (for error paths and gaps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pgf.io.genome import Genome
from pgf.io.onehot import one_hot
from pgf.io.regions import Region
from pgf.io.tracks import AttributionTrack, RunMetadata
from pgf.io.writers import HDF5Writer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
FASTA = SAMPLE / "genome.fa"
TRUTH = SAMPLE / "truth_elements.bed"
VCF = SAMPLE / "variants.vcf"
REGIONS = ["chr1:103,801-105,300", "chr1:133,201-134,700"]  # chr1_promoter_9; chr1_enhancer_5 and a VCF variant


def model_attributions(tmp_path_factory) -> Path:
    """The built-in model's hypothetical attributions of REGIONS (computed once per session)."""
    path = tmp_path_factory.getbasetemp() / "viz_model_attributions.h5"
    if not path.exists():
        from pgf.workflows.attribute import AttributeRequest, run_attribute

        run_attribute(AttributeRequest(fasta=FASTA, output=path, regions=REGIONS, method="hypothetical",
                                       engine="autograd", device="cpu"))
    return path


def synthetic_attributions(path: Path, fasta: Path, tracks: dict[Region, np.ndarray]) -> Path:
    """An attribution HDF5 file holding the given per-base scores, bases from `fasta`."""
    metadata = RunMetadata("input-x-gradient", "sum:expression", "synthetic", "0" * 64, False, "pgf", "float32", "test")
    with Genome(fasta) as genome:
        sizes = dict(genome.chrom_sizes)
        with HDF5Writer(path, metadata, sizes, force=True) as writer:
            for region, score in tracks.items():
                onehot = one_hot(genome.fetch(region))
                gradient = onehot * np.nan_to_num(score)[:, None]
                writer.add(AttributionTrack(region, onehot, gradient.astype(np.float32), score.astype(np.float32), 1.0))
    return path
