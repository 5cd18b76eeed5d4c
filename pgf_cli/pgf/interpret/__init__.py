"""Interpretation methods built on the engine: integrated and expected gradients, exact
saturation mutagenesis (ISM), reverse-complement averaging, dinucleotide shuffles.

Everything here works on in-memory one-hot batches (b, L, 4) (columns A C G T,
all-zero rows for N) and a parsed target (`pgf.models.targets.Target`); every
model evaluation goes through an engine (`pgf.engine.get_engine`), with the
method's points (interpolation steps, baselines, mutants) as the batch
dimension, in chunks of at most `batch_rows` rows, so memory stays what one
engine call on `batch_rows` sequences needs.

Layer: between workflows and engine (imports engine and models only).
"""

from pgf.interpret.ism import DEFAULT_MAX_ISM_POSITIONS, ISMResult, saturation_mutagenesis, taylor_ism_correlation
from pgf.interpret.paths import BASELINES, QUADRATURES, PathResult, expected_gradients, integrated_gradients
from pgf.interpret.rc import mirrored_starts, mirrored_window, rc_gradient, reverse_complement
from pgf.interpret.shuffle import dinucleotide_counts, dinucleotide_shuffle

__all__ = [
    "BASELINES", "DEFAULT_MAX_ISM_POSITIONS", "ISMResult", "PathResult", "QUADRATURES", "dinucleotide_counts",
    "dinucleotide_shuffle", "expected_gradients", "integrated_gradients", "mirrored_starts", "mirrored_window",
    "rc_gradient", "reverse_complement", "saturation_mutagenesis", "taylor_ism_correlation",
]
