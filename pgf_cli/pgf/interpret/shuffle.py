"""Dinucleotide-preserving shuffles of a one-hot sequence (Altschul & Erickson 1985).

The sequence is an Eulerian path through the graph whose vertices are the
symbols (A, C, G, T and N for all-zero rows) and whose edges are its L − 1
consecutive pairs. Every Eulerian path from the same first symbol uses each
edge once, so it has exactly the same dinucleotide counts (and the same first
and last symbol). A uniformly random one is drawn as in Altschul–Erickson /
Kandel et al.: choose for every vertex except the last symbol a random
"last exit" edge, keep the choice only if those edges form a tree pointing to
the last symbol (rejection: at most 5 vertices, so this is quick), shuffle
every vertex's other exits, put the last exit at the end and walk.
"""

from __future__ import annotations

import numpy as np

N_CODE = 4  # all-zero rows (N, IUPAC codes)


def _codes(onehot: np.ndarray) -> np.ndarray:
    onehot = np.asarray(onehot)
    codes = np.argmax(onehot, axis=-1)
    codes[onehot.sum(axis=-1) == 0] = N_CODE
    return codes.astype(np.int64)


def _onehot(codes: np.ndarray, dtype) -> np.ndarray:
    out = np.zeros((codes.size, 4), dtype=dtype)
    observed = codes < N_CODE
    out[np.flatnonzero(observed), codes[observed]] = 1
    return out


def dinucleotide_counts(onehot: np.ndarray) -> np.ndarray:
    """(5, 5) counts of consecutive symbol pairs (A C G T N) of a one-hot (L, 4)."""
    codes = _codes(onehot)
    counts = np.zeros((5, 5), dtype=np.int64)
    np.add.at(counts, (codes[:-1], codes[1:]), 1)
    return counts


def dinucleotide_shuffle(onehot: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random sequence (L, 4) with the same dinucleotide counts, first and last base as `onehot`."""
    codes = _codes(onehot)
    if codes.size < 3:
        return np.array(onehot, copy=True)
    successors = {int(v): list(codes[1:][codes[:-1] == v]) for v in np.unique(codes[:-1])}
    last = int(codes[-1])
    while True:
        exits = {v: int(rng.integers(len(s))) for v, s in successors.items() if v != last}
        if all(_reaches(v, last, exits, successors) for v in exits):
            break
    order = {}
    for v, succ in successors.items():
        succ = list(succ)
        final = succ.pop(exits[v]) if v in exits else None
        rng.shuffle(succ)
        order[v] = succ + ([final] if final is not None else [])
    walk = np.empty(codes.size, dtype=np.int64)
    walk[0] = codes[0]
    used = dict.fromkeys(order, 0)
    for i in range(1, codes.size):
        v = int(walk[i - 1])
        walk[i] = order[v][used[v]]
        used[v] += 1
    return _onehot(walk, np.asarray(onehot).dtype)


def _reaches(v: int, last: int, exits: dict[int, int], successors: dict[int, list]) -> bool:
    """True when following last-exit edges from `v` arrives at `last` (no cycle)."""
    for _ in range(len(exits) + 1):
        if v == last:
            return True
        v = int(successors[v][exits[v]])
    return v == last
