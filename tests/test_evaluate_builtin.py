"""bench/evaluate_builtin.py's ground truth: the truth's own ISM agrees with the simulator."""

from pathlib import Path

import numpy as np
import pytest

from bench import evaluate_builtin as evaluate
from pgf.io.genome import Genome
from pgf.io.regions import Region
from pgf.sim.grammar import Element, Grammar, MotifSite, render_signals, site_affinity
from pgf.sim.motifs import load_motifs, reverse_complement
from pgf.sim.truth import read_truth_elements, read_truth_motifs

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


def _accessibility_sum(sequence: str, offset: int, sites, lo: int, hi: int) -> float:
    """The simulator's accessibility summed over [lo, hi), for `sequence` starting at genome
    position `offset` with the planted `sites` (affinities recomputed from the sequence)."""
    matrices, grammar = load_motifs(), Grammar()
    elements = []
    for site in sites:
        instance = sequence[site.start - offset : site.end - offset]
        if site.strand == "-":
            instance = reverse_complement(instance)
        affinity = site_affinity(matrices[site.name], instance, grammar.affinity_scale)
        local = MotifSite(site.name, site.matrix_id, site.start - offset, site.end - offset, site.strand, affinity)
        elements.append(Element(matrices[site.name].role, local.start, local.end, [local], strength=1.0))
    signals = render_signals(len(sequence), elements, grammar)
    return float(signals[1, lo - offset : hi - offset].astype(np.float64).sum())


def test_truth_ism_is_the_simulators_change_of_signal():
    motifs = read_truth_motifs(SAMPLE / "truth_motifs.bed")
    enhancer = next(e for e in read_truth_elements(SAMPLE / "truth_elements.bed") if e.role == "enhancer")
    centre = (enhancer.start + enhancer.end) // 2
    lo, hi = centre - 100, centre + 100
    with Genome(SAMPLE / "genome.fa") as genome:
        taylor, exact = evaluate.truth_taylor_vs_ism(genome, motifs, enhancer.chrom, lo, hi, "accessibility")
        offset = lo - 400
        sequence = genome.fetch(Region(enhancer.chrom, offset, hi + 400)).upper()
    nearby = [m for m in motifs if m.chrom == enhancer.chrom and offset <= m.start and m.end <= hi + 400]
    assert len(exact) == 3 * (hi - lo) and np.count_nonzero(exact) >= 3 * 12  # at least one planted site
    reference = _accessibility_sum(sequence, offset, nearby, lo, hi)
    index = 0
    for position in range(lo, hi):
        ref = sequence[position - offset]
        for alt in "ACGT".replace(ref, ""):
            if exact[index] != 0 or index % 7 == 0:  # every site base, and some background
                at = position - offset
                mutant = sequence[:at] + alt + sequence[at + 1 :]
                changed = _accessibility_sum(mutant, offset, nearby, lo, hi) - reference
                assert exact[index] == pytest.approx(changed, rel=2e-5, abs=1e-5)
                # first order: same sign, and |Taylor| >= |exact| (exp is convex)
                assert np.sign(taylor[index]) == np.sign(exact[index])
                assert abs(taylor[index]) >= abs(exact[index]) - 1e-12 or exact[index] > 0
            index += 1
