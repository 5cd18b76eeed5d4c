"""Names and files for the planted truth (truth_elements.bed, truth_motifs.bed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pgf.sim.grammar import SimulatedChromosome


def element_names(chromosome: SimulatedChromosome) -> list[str]:
    """`chr1_promoter_3`: chromosome, role and the element's rank among its role, left to right."""
    counts: dict[str, int] = {}
    names = []
    for element in chromosome.elements:
        counts[element.role] = counts.get(element.role, 0) + 1
        names.append(f"{chromosome.name}_{element.role}_{counts[element.role]}")
    return names


@dataclass(frozen=True)
class TruthElement:
    chrom: str
    start: int
    end: int
    name: str
    role: str
    strength: float
    activity: float | None
    distal_partner: str | None


@dataclass(frozen=True)
class TruthMotif:
    chrom: str
    start: int
    end: int
    name: str
    strand: str
    matrix_id: str
    element: str
    affinity: float  # the BED score / 1000 (pgf.sim.grammar.site_affinity)


def _rows(path: Path):
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            yield line.split("\t")


def read_truth_elements(path: Path) -> list[TruthElement]:
    return [
        TruthElement(c, int(s), int(e), name, role, float(strength),
                     None if activity == "." else float(activity), None if partner == "." else partner)
        for c, s, e, name, _, _, role, strength, activity, partner in _rows(path)
    ]


def read_truth_motifs(path: Path) -> list[TruthMotif]:
    return [
        TruthMotif(c, int(s), int(e), name, strand, mid, element, int(score) / 1000)
        for c, s, e, name, score, strand, mid, element in _rows(path)
    ]
