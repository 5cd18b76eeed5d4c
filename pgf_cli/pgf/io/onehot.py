"""One-hot encoding of DNA.

Columns are A, C, G, T in that order. Lower case is upper case (soft-masking
is ignored). N and every other IUPAC ambiguity code (R Y S W K M B D H V),
U (uracil: RNA is not expected in a genome FASTA) and the gap characters
'-' and '.' encode as an all-zero row: such positions carry
no observed base, so their per-base scores are masked (NaN) in every output.
Any other character is an error.
"""

from __future__ import annotations

import numpy as np

from pgf.errors import GenomeError

BASES = "ACGT"
_MASKED_CODES = "NRYSWKMBDHVU-."
_INVALID = 255
_MASKED = 4

class InvalidSequenceError(GenomeError):
    """A character that is neither a base nor an IUPAC code; `offset` is 0-based in the sequence."""

    def __init__(self, character: str, offset: int, count: int):
        super().__init__(
            f"invalid sequence character {character!r} at offset {offset} "
            f"({count} invalid characters in all); expected A, C, G, T or IUPAC codes"
        )
        self.character, self.offset, self.count = character, offset, count


_LOOKUP = np.full(256, _INVALID, dtype=np.uint8)
for _index, _base in enumerate(BASES):
    _LOOKUP[ord(_base)] = _index
    _LOOKUP[ord(_base.lower())] = _index
for _code in _MASKED_CODES:
    _LOOKUP[ord(_code)] = _MASKED
    _LOOKUP[ord(_code.lower())] = _MASKED


def base_indices(sequence: str) -> np.ndarray:
    """Per-position code: 0..3 for A, C, G, T; 4 for a masked position (N, IUPAC, gap)."""
    raw = np.frombuffer(sequence.encode("latin-1", errors="replace"), dtype=np.uint8)
    codes = _LOOKUP[raw]
    bad = np.flatnonzero(codes == _INVALID)
    if bad.size:
        position = int(bad[0])
        raise InvalidSequenceError(sequence[position], position, int(bad.size))
    return codes


def one_hot(sequence: str) -> np.ndarray:
    """(L, 4) uint8 one-hot of `sequence`; masked positions are all-zero rows."""
    codes = base_indices(sequence)
    encoded = np.zeros((codes.size, 4), dtype=np.uint8)
    observed = codes < 4
    encoded[np.flatnonzero(observed), codes[observed]] = 1
    return encoded


def observed_mask(onehot: np.ndarray) -> np.ndarray:
    """(L,) bool: True where a base (A, C, G or T) was observed."""
    return onehot.sum(axis=1) > 0
