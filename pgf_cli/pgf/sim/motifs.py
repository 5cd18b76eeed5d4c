"""Transcription-factor motifs (JASPAR count matrices in motifs.json) and planted instances."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

MOTIFS_FILE = Path(__file__).with_name("motifs.json")
BASES = "ACGT"


@dataclass(frozen=True)
class Motif:
    """A position frequency matrix with its JASPAR identity and its role in the grammar."""

    matrix_id: str
    name: str
    role: str  # promoter | enhancer | insulator | silencer
    probabilities: np.ndarray  # (length, 4) over A C G T

    @property
    def length(self) -> int:
        return self.probabilities.shape[0]

    def sample(self, rng: np.random.Generator, sharpness: float = 3.0) -> str:
        """One instance, each position drawn from the matrix column raised to `sharpness`
        (> 1 favours the consensus; planted sites are strong but not all identical)."""
        weights = self.probabilities**sharpness
        weights /= weights.sum(axis=1, keepdims=True)
        cumulative = weights.cumsum(axis=1)
        draws = rng.random(self.length)[:, None]
        indices = (draws > cumulative).sum(axis=1).clip(max=3)
        return "".join(BASES[i] for i in indices)


@lru_cache(maxsize=1)
def load_motifs(path: Path = MOTIFS_FILE) -> dict[str, Motif]:
    """Motifs by name (TBP, SP2, ..., CTCF, REST), matrices with a 0.25 pseudocount per base."""
    data = json.loads(Path(path).read_text())
    motifs = {}
    for entry in data["motifs"]:
        counts = np.asarray(entry["counts"], dtype=np.float64) + 0.25
        motifs[entry["name"]] = Motif(
            matrix_id=entry["id"],
            name=entry["name"],
            role=entry["role"],
            probabilities=counts / counts.sum(axis=1, keepdims=True),
        )
    return motifs


def reverse_complement(sequence: str) -> str:
    return sequence[::-1].translate(str.maketrans("ACGTacgtN", "TGCAtgcaN"))
