"""Dinucleotide shuffles keep every dinucleotide count, the first and the last base."""

import numpy as np
import pytest

from pgf.interpret.shuffle import dinucleotide_counts, dinucleotide_shuffle
from pgf.io.onehot import one_hot

from helpers import random_sequence


@pytest.mark.parametrize("sequence", [
    random_sequence(200, 1),
    "AAAAACCCCCGGGGGTTTTT" * 3,
    "ACGTNNNACGTTTGCANACG" + random_sequence(50, 2) + "NN",
    "ACGTACGTAC",
    "AC",
])
def test_shuffle_keeps_dinucleotide_counts(sequence):
    x = one_hot(sequence)
    for seed in range(5):
        y = dinucleotide_shuffle(x, np.random.default_rng(seed))
        assert y.shape == x.shape and y.dtype == x.dtype
        np.testing.assert_array_equal(dinucleotide_counts(y), dinucleotide_counts(x))
        np.testing.assert_array_equal(y[0], x[0])
        np.testing.assert_array_equal(y[-1], x[-1])
        assert set(y.sum(axis=1).tolist()) <= {0, 1}


def test_shuffle_is_seeded_and_random():
    x = one_hot(random_sequence(300, 3))
    a = dinucleotide_shuffle(x, np.random.default_rng(7))
    b = dinucleotide_shuffle(x, np.random.default_rng(7))
    c = dinucleotide_shuffle(x, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, x)


def test_shuffle_reaches_every_eulerian_arrangement():
    """ACAGA has 2 dinucleotide-preserving arrangements (ACAGA, AGACA): both appear."""
    x = one_hot("ACAGA")
    rng = np.random.default_rng(0)
    seen = {dinucleotide_shuffle(x, rng).argmax(1).tobytes() for _ in range(200)}
    assert len(seen) == 2
