"""Background DNA: a first-order Markov chain with human-like GC content (0.41) and CpG depletion (o/e ~0.25)."""

from __future__ import annotations

import numpy as np

BASES = np.array(list("ACGT"))


def _matrix(composition: float, cpg_ratio: float) -> np.ndarray:
    p = np.array([(1 - composition) / 2, composition / 2, composition / 2, (1 - composition) / 2])
    matrix = np.tile(p, (4, 1))
    matrix[1, 2] *= cpg_ratio  # C followed by G
    return matrix / matrix.sum(axis=1, keepdims=True)


def stationary_gc(matrix: np.ndarray) -> float:
    """GC fraction of the chain's stationary distribution."""
    values, vectors = np.linalg.eig(matrix.T)
    pi = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    pi /= pi.sum()
    return float(pi[1] + pi[2])


def transition_matrix(gc_content: float = 0.41, cpg_ratio: float = 0.17) -> np.ndarray:
    """P[previous, next] over A C G T with stationary GC fraction `gc_content` and the
    C->G transition scaled by `cpg_ratio` before renormalising (0.17 gives CpG
    observed/expected ~0.25, as in vertebrate DNA). The composition compensating the
    depletion is found by bisection."""
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if stationary_gc(_matrix(mid, cpg_ratio)) < gc_content else (lo, mid)
    return _matrix((lo + hi) / 2, cpg_ratio)


def markov_background(length: int, rng: np.random.Generator, gc_content: float = 0.41, cpg_ratio: float = 0.17) -> np.ndarray:
    """`length` bases as indices 0..3 (A C G T) from the chain, vectorised by inverse CDF."""
    cumulative = transition_matrix(gc_content, cpg_ratio).cumsum(axis=1)
    draws = rng.random(length)
    out = np.empty(length, dtype=np.int8)
    previous = rng.integers(4)
    # a Python loop over positions is the plain way; chains of 4 states are cheap enough
    # at the sizes simulated here (~1 s per Mb)
    for i, u in enumerate(draws):
        row = cumulative[previous]
        previous = 0 if u < row[0] else 1 if u < row[1] else 2 if u < row[2] else 3
        out[i] = previous
    return out
