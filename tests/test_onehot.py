"""One-hot encoding: A C G T columns, masked IUPAC/N/gaps, invalid characters."""

from __future__ import annotations

import numpy as np
import pytest

from pgf.errors import GenomeError
from pgf.io.onehot import BASES, base_indices, observed_mask, one_hot

IUPAC = "NRYSWKMBDHV"


def test_acgt_is_identity():
    encoded = one_hot("ACGT")
    assert BASES == "ACGT"
    assert encoded.dtype == np.uint8
    assert encoded.shape == (4, 4)
    np.testing.assert_array_equal(encoded, np.eye(4, dtype=np.uint8))


def test_rows_follow_the_sequence():
    encoded = one_hot("TTGCA")
    expected = np.array([[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(encoded, expected)
    np.testing.assert_array_equal(base_indices("TTGCA"), [3, 3, 2, 1, 0])


def test_lower_case_equals_upper_case():
    sequence = "ACGTTGCAacgtNnRy"
    np.testing.assert_array_equal(one_hot(sequence.lower()), one_hot(sequence.upper()))
    np.testing.assert_array_equal(one_hot("acgt"), np.eye(4, dtype=np.uint8))
    np.testing.assert_array_equal(one_hot("aCgT"), np.eye(4, dtype=np.uint8))


@pytest.mark.parametrize("code", list(IUPAC + IUPAC.lower() + "-."))
def test_n_iupac_and_gaps_are_all_zero_rows(code):
    encoded = one_hot(f"A{code}T")
    np.testing.assert_array_equal(encoded, [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    assert base_indices(f"A{code}T").tolist() == [0, 4, 3]
    assert observed_mask(encoded).tolist() == [True, False, True]


def test_all_masked_codes_together():
    sequence = IUPAC + IUPAC.lower() + "-."
    encoded = one_hot(sequence)
    assert encoded.shape == (len(sequence), 4) == (24, 4)
    assert int(encoded.sum()) == 0


@pytest.mark.parametrize(
    "sequence, char, offset, count",
    [("ACGX", "X", 3, 1), ("1CGT", "1", 0, 1), ("ACZZT", "Z", 2, 2), ("AC GT", " ", 2, 1),
     ("ACG\nT", "\n", 3, 1), ("ACGé", "é", 3, 1), ("AC€GT", "€", 2, 1), ("acgtE", "E", 4, 1)],
)
def test_invalid_characters_raise_naming_character_and_offset(sequence, char, offset, count):
    with pytest.raises(GenomeError) as info:
        one_hot(sequence)
    assert str(info.value) == (
        f"invalid sequence character {char!r} at offset {offset} "
        f"({count} invalid characters in all); expected A, C, G, T or IUPAC codes"
    )


def test_empty_sequence():
    encoded = one_hot("")
    assert encoded.shape == (0, 4)
    assert encoded.dtype == np.uint8
    assert observed_mask(encoded).shape == (0,)
    assert base_indices("").shape == (0,)


def test_long_sequence_counts():
    rng = np.random.default_rng(7)
    sequence = "".join(rng.choice(list("ACGTNacgtn"), size=10_000))
    encoded = one_hot(sequence)
    assert encoded.shape == (10_000, 4)
    np.testing.assert_array_equal(encoded.sum(axis=1), [0 if c in "Nn" else 1 for c in sequence])
    for column, base in enumerate("ACGT"):
        assert int(encoded[:, column].sum()) == sequence.upper().count(base)


def test_observed_mask():
    encoded = one_hot("ANcgR-t.")
    mask = observed_mask(encoded)
    assert mask.dtype == bool
    assert mask.tolist() == [True, False, True, True, False, False, True, False]
    np.testing.assert_array_equal(observed_mask(np.zeros((3, 4), dtype=np.uint8)), [False, False, False])
