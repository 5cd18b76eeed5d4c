"""The simulated grammar's vocabulary: its parameters, element and site records, and a
site's affinity (how well its bases match the motif's matrix). The rules that place
elements and turn them into signals are in `pgf.sim.grammar`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pgf.sim.motifs import Motif

CHANNELS = ("expression", "accessibility")

PROMOTER_WEIGHTS = {"TBP": 1.0, "SP2": 0.6, "NFYA": 0.5}
ENHANCER_WEIGHTS = {"FOSL1::JUN": 1.0, "CEBPB": 0.8, "FOXA1": 0.6, "HNF1A": 0.6}


@dataclass(frozen=True)
class Grammar:
    """How elements act on the signal."""

    decay_length: float = 25_000.0  # bp; enhancer effect exp(-d / decay_length)
    max_boost: float = 2.0  # enhancers add at most max_boost to the activity factor
    basal: float = 0.25  # activity factor of a promoter with no enhancer in its domain
    silencer_range: int = 1_000  # bp between a REST site and a promoter's centre
    silencer_factor: float = 0.3
    expression_width: float = 50.0  # sd of the expression bump, bp
    accessibility_width: float = 60.0
    insulator_accessibility: float = 1.0
    silencer_accessibility: float = 0.6
    affinity_scale: float = 0.5  # site affinity exp(scale x log-likelihood ratio to the consensus); 0: all 1


@dataclass(frozen=True)
class Layout:
    """How many elements of each kind are planted, as mean spacings in bp."""

    promoter_every: float = 25_000.0
    enhancer_every: float = 40_000.0
    insulator_every: float = 20_000.0
    silencer_every: float = 80_000.0
    silencer_near_promoter: float = 0.25  # chance a promoter gets a REST site 300-900 bp away
    distal_pairs: int = 0  # promoter + enhancer pairs 20-45 kb apart, nothing between, a CTCF guard beyond
    distal_range: tuple[int, int] = (20_000, 45_000)
    min_gap: int = 300  # bp between planted elements
    # each planted instance is drawn from its matrix's columns raised to a sharpness from this
    # range (3: strong sites; 1: the matrix itself, mostly weak sites); a single value draws nothing
    site_sharpness: tuple[float, float] = (3.0, 3.0)
    # chance that a planted instance has one half (its first or last bases) redrawn uniformly:
    # a partial site, whose low affinity teaches that a motif's core alone does little
    partial_sites: float = 0.0


@dataclass(frozen=True)
class MotifSite:
    name: str
    matrix_id: str
    start: int  # 0-based, half-open
    end: int
    strand: str
    affinity: float = 1.0  # exp(affinity_scale x log-likelihood ratio of the instance to the consensus)


@dataclass
class Element:
    role: str
    start: int
    end: int
    sites: list[MotifSite] = field(default_factory=list)
    strength: float = 0.0  # from its own motifs (base strength of a promoter)
    activity: float = 0.0  # promoters: after the grammar (enhancers, insulators, silencers)
    distal_partner: int | None = None  # index of the enhancer (promoter) placed as a distal pair

    @property
    def centre(self) -> int:
        return (self.start + self.end) // 2


@dataclass
class SimulatedChromosome:
    name: str
    sequence: str
    signals: np.ndarray  # (len(CHANNELS), L) float32
    elements: list[Element]


def site_affinity(motif: Motif, instance: str, scale: float) -> float:
    """exp(scale x (log P(instance) - log P(consensus))) under the motif's matrix
    (`instance` on the motif's own strand)."""
    log_p = np.log(motif.probabilities)
    columns = np.array(["ACGT".index(base) for base in instance])
    ratio = log_p[np.arange(motif.length), columns].sum() - log_p.max(axis=1).sum()
    return float(np.exp(scale * ratio))
