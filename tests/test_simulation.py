"""The simulated genome: deterministic, the grammar's rules hold, sample_data/ regenerates from its config."""

import json
from pathlib import Path

import numpy as np
import pyBigWig
import pytest

from helpers import load_script
from pgf.sim.background import markov_background
from pgf.sim.grammar import (
    CHANNELS, Element, Grammar, Layout, MotifSite, first_order_snv_effects, promoter_activities, render_signals,
    rescore_elements, simulate_chromosome, site_affinity,
)
from pgf.sim.motifs import load_motifs, reverse_complement
from pgf.sim.truth import read_truth_elements, read_truth_motifs

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


def test_simulation_is_deterministic_for_a_seed():
    layout = Layout(distal_pairs=1)
    a = simulate_chromosome("c", 60_000, np.random.default_rng(11), layout)
    b = simulate_chromosome("c", 60_000, np.random.default_rng(11), layout)
    c = simulate_chromosome("c", 60_000, np.random.default_rng(12), layout)
    assert a.sequence == b.sequence and np.array_equal(a.signals, b.signals)
    assert [(e.role, e.start, e.activity) for e in a.elements] == [(e.role, e.start, e.activity) for e in b.elements]
    assert a.sequence != c.sequence
    assert a.signals.shape == (len(CHANNELS), 60_000) and a.signals.dtype == np.float32


def test_background_composition():
    bases = markov_background(200_000, np.random.default_rng(0))
    gc = np.isin(bases, [1, 2]).mean()
    cpg = np.mean((bases[:-1] == 1) & (bases[1:] == 2))
    expected = np.mean(bases == 1) * np.mean(bases == 2)
    assert abs(gc - 0.41) < 0.01
    assert 0.2 < cpg / expected < 0.3


def _element(role, start, strength=1.0):
    return Element(role, start, start + 100, strength=strength)


def test_enhancer_effect_decays_and_is_blocked_by_an_insulator():
    grammar = Grammar(decay_length=10_000.0, max_boost=2.0)
    promoter, enhancer = _element("promoter", 50_000), _element("enhancer", 70_000, strength=0.5)
    promoter_activities([promoter, enhancer], grammar)
    boost = 0.5 * np.exp(-20_000 / 10_000)
    assert promoter.activity == pytest.approx(1.0 * (grammar.basal + 2.0 * np.tanh(boost / 2.0)))
    assert promoter.activity > grammar.basal

    blocked = _element("promoter", 50_000)
    promoter_activities([blocked, _element("insulator", 60_000), _element("enhancer", 70_000, strength=0.5)], grammar)
    assert blocked.activity == pytest.approx(grammar.basal)

    # an insulator outside the pair does not block
    outside = _element("promoter", 50_000)
    promoter_activities([_element("insulator", 10_000), outside, _element("enhancer", 70_000, strength=0.5)], grammar)
    assert outside.activity == pytest.approx(promoter.activity)

    # saturation: many strong enhancers add at most max_boost
    crowded = _element("promoter", 50_000)
    promoter_activities([crowded] + [_element("enhancer", 50_500 + 300 * i, strength=3.0) for i in range(10)], grammar)
    assert grammar.basal + 1.9 < crowded.activity <= grammar.basal + 2.0


def test_silencer_is_short_range():
    grammar = Grammar()
    near, far = _element("promoter", 10_000), _element("promoter", 50_000)
    promoter_activities([near, _element("silencer", 10_600), far, _element("silencer", 52_000)], grammar)
    assert near.activity == pytest.approx(grammar.silencer_factor * grammar.basal)
    assert far.activity == pytest.approx(grammar.basal)


def test_motifs_are_the_listed_jaspar_matrices():
    motifs = load_motifs()
    ids = {m.name: m.matrix_id for m in motifs.values()}
    assert ids == {
        "TBP": "MA0108.2", "SP2": "MA0516.1", "NFYA": "MA0060.1", "FOSL1::JUN": "MA1128.1", "CEBPB": "MA0466.3",
        "FOXA1": "MA0148.3", "HNF1A": "MA0046.3", "CTCF": "MA0139.2", "REST": "MA0138.3",
    }
    for motif in motifs.values():
        assert np.allclose(motif.probabilities.sum(axis=1), 1.0)


def _log_odds(motif, site: str) -> float:
    index = {"A": 0, "C": 1, "G": 2, "T": 3}
    return float(sum(np.log2(motif.probabilities[i, index[b]] / 0.25) for i, b in enumerate(site)))


def test_truth_files_point_at_the_planted_motifs():
    from pgf.io.genome import Genome
    from pgf.io.regions import Region

    motifs = load_motifs()
    truth = read_truth_motifs(SAMPLE / "truth_motifs.bed")
    elements = {e.name: e for e in read_truth_elements(SAMPLE / "truth_elements.bed")}
    assert len(truth) > 100
    with Genome(SAMPLE / "genome.fa") as genome:
        scores = []
        for site in truth:
            sequence = genome.fetch(Region(site.chrom, site.start, site.end)).upper()
            if site.strand == "-":
                sequence = reverse_complement(sequence)
            scores.append(_log_odds(motifs[site.name], sequence))
            element = elements[site.element]
            assert element.start <= site.start and site.end <= element.end
        shifted = []  # the same windows one base to the right score far lower
        for site in truth[:60]:
            sequence = genome.fetch(Region(site.chrom, site.start + 1, site.end + 1)).upper()
            if site.strand == "-":
                sequence = reverse_complement(sequence)
            shifted.append(_log_odds(motifs[site.name], sequence))
    assert min(scores) > 0
    assert np.median(scores) > np.median(shifted) + 5


def test_site_affinity_is_the_matrix_likelihood_ratio_to_the_consensus():
    tbp = load_motifs()["TBP"]
    columns = tbp.probabilities.argmax(axis=1)
    consensus = "".join("ACGT"[c] for c in columns)
    assert site_affinity(tbp, consensus, 0.5) == pytest.approx(1.0)
    second = int(np.argsort(tbp.probabilities[3])[-2])  # a mismatch at column 3
    mutant = consensus[:3] + "ACGT"[second] + consensus[4:]
    ratio = tbp.probabilities[3, second] / tbp.probabilities[3, columns[3]]
    assert site_affinity(tbp, mutant, 0.5) == pytest.approx(ratio**0.5)
    assert site_affinity(tbp, mutant, 0.0) == 1.0  # scale 0: every planted site counts fully


def test_site_signals_scale_with_affinity():
    grammar = Grammar()
    def tracks(affinity):
        site = MotifSite("FOSL1::JUN", "MA1128.1", 1_000, 1_013, "+", affinity)
        promoter_site = MotifSite("TBP", "MA0108.2", 5_000, 5_015, "+", affinity)
        enhancer = Element("enhancer", 950, 1_150, [site], strength=1.0 * affinity)
        promoter = Element("promoter", 4_950, 5_100, [promoter_site], strength=1.0 * affinity)
        promoter_activities([promoter, enhancer], grammar)
        return render_signals(8_000, [promoter, enhancer], grammar)
    full, half = tracks(1.0), tracks(0.5)
    assert half[1].max() == pytest.approx(0.5 * full[1].max(), rel=1e-5)  # accessibility: the site's own height
    assert 0 < half[0].max() < 0.5 * full[0].max()  # expression: weaker promoter and weaker enhancer


def test_planted_affinities_match_the_planted_sequences():
    """truth_motifs.bed's score is 1000 x the affinity of the instance in genome.fa
    (read on the motif's strand); planted sites span most of the range."""
    from pgf.io.genome import Genome
    from pgf.io.regions import Region

    motifs, scale = load_motifs(), Grammar().affinity_scale
    truth = read_truth_motifs(SAMPLE / "truth_motifs.bed")
    with Genome(SAMPLE / "genome.fa") as genome:
        for site in truth:
            sequence = genome.fetch(Region(site.chrom, site.start, site.end)).upper()
            if site.strand == "-":
                sequence = reverse_complement(sequence)
            assert site.affinity == pytest.approx(site_affinity(motifs[site.name], sequence, scale), abs=6e-4)
    affinities = np.array([site.affinity for site in truth])
    assert affinities.max() == 1.0 and np.quantile(affinities, 0.1) < 0.5


def test_weak_and_partial_training_sites_carry_the_affinity_of_their_bases():
    """Training layouts may plant weaker (lower sharpness) and partial (half redrawn) sites:
    every site's affinity is still that of the bases written into the sequence."""
    matrices, scale = load_motifs(), Grammar().affinity_scale
    def affinities(layout):
        chromosome = simulate_chromosome("t", 30_000, np.random.default_rng(4), layout)
        values = []
        for site in (site for element in chromosome.elements for site in element.sites):
            instance = chromosome.sequence[site.start : site.end]
            instance = reverse_complement(instance) if site.strand == "-" else instance
            assert site.affinity == pytest.approx(site_affinity(matrices[site.name], instance, scale))
            values.append(site.affinity)
        return np.array(values)
    strong = affinities(Layout(promoter_every=2_000, enhancer_every=2_000))
    weak = affinities(Layout(promoter_every=2_000, enhancer_every=2_000, site_sharpness=(0.5, 3.0), partial_sites=0.5))
    assert np.median(weak) < 0.6 * np.median(strong)
    assert np.mean(weak < 0.01) > 0.2 and np.mean(strong < 0.01) == 0  # partial sites are nearly inert


def test_rescoring_an_edited_sequence_changes_only_the_edited_sites():
    """rescore_elements: the unedited sequence gives back the planted truth; a mismatch in
    a site scales that site's affinity by exp(scale x delta log P) and nothing else; an
    edit outside every site changes nothing, even if it would create a motif match."""
    grammar, matrices = Grammar(), load_motifs()
    chromosome = simulate_chromosome("t", 20_000, np.random.default_rng(6), Layout(promoter_every=2_000, enhancer_every=2_000))
    same = rescore_elements(chromosome.elements, chromosome.sequence, grammar)
    assert np.allclose(render_signals(20_000, same, grammar), chromosome.signals, rtol=1e-6, atol=1e-7)

    enhancer = next(e for e in chromosome.elements if e.role == "enhancer" and e.sites[0].strand == "+")
    site = enhancer.sites[0]
    column = int(np.argmax(matrices[site.name].probabilities.max(axis=1)))  # its most informative base
    position = site.start + column
    ref = chromosome.sequence[position]
    alt = "ACGT"[int(np.argmin(matrices[site.name].probabilities[column]))]
    edited = chromosome.sequence[:position] + alt + chromosome.sequence[position + 1 :]
    rescored = rescore_elements(chromosome.elements, edited, grammar)
    probabilities = matrices[site.name].probabilities[column]
    expected = site.affinity * (probabilities["ACGT".index(alt)] / probabilities["ACGT".index(ref)]) ** grammar.affinity_scale
    index = chromosome.elements.index(enhancer)
    assert rescored[index].sites[0].affinity == pytest.approx(expected, rel=1e-9)
    assert rescored[index].strength < enhancer.strength
    changed = [(a, b) for old, new in zip(chromosome.elements, rescored) for a, b in zip(old.sites, new.sites) if a != b]
    assert len(changed) == 1

    consensus = "".join("ACGT"[c] for c in matrices["FOSL1::JUN"].probabilities.argmax(axis=1))
    outside = next(p for p in range(100, 20_000)
                   if all(p + len(consensus) + 5 <= e.start or p >= e.end + 5 for e in chromosome.elements))
    planted = chromosome.sequence[:outside] + consensus + chromosome.sequence[outside + len(consensus) :]
    untouched = rescore_elements(chromosome.elements, planted, grammar)
    assert np.array_equal(render_signals(20_000, untouched, grammar), chromosome.signals)


def test_first_order_snv_effects_are_the_derivative_of_the_rescored_truth():
    """first_order_snv_effects: zero at reference bases and off planted sites; for SNVs that
    change a site's log affinity by a little (|delta| < 0.2) the exact rescored effect on the
    readout agrees to second order, for a promoter's expression and an enhancer's accessibility."""
    grammar = Grammar()
    layout = Layout(promoter_every=800, enhancer_every=800, insulator_every=1e9, silencer_every=1e9,
                    silencer_near_promoter=0.0, min_gap=100)
    chromosome = simulate_chromosome("t", 4_000, np.random.default_rng(11), layout)
    sequence = chromosome.sequence
    site_bases = {p for e in chromosome.elements for s in e.sites for p in range(s.start, s.end)}
    checked = {0: 0, 1: 0}
    for role, channel in (("promoter", 0), ("enhancer", 1)):
        element = next(e for e in chromosome.elements if e.role == role)
        lo, hi = element.centre - 100, element.centre + 100
        effects = first_order_snv_effects(chromosome.elements, sequence, grammar, channel, lo, hi)
        assert effects.shape == (4_000, 4)
        assert np.all(effects[np.arange(4_000), ["ACGT".index(b) for b in sequence]] == 0)
        assert not effects[[p for p in range(4_000) if p not in site_bases]].any()
        before = render_signals(4_000, chromosome.elements, grammar, np.float64)[channel, lo:hi].sum()
        for position in sorted(site_bases):
            for base in "ACGT".replace(sequence[position], ""):
                first = effects[position, "ACGT".index(base)]
                site = next(s for e in chromosome.elements for s in e.sites if s.start <= position < s.end)
                edited = sequence[:position] + base + sequence[position + 1 :]
                after_elements = rescore_elements(chromosome.elements, edited, grammar)
                new_site = next(s for e in after_elements for s in e.sites if s.start == site.start)
                delta = np.log(new_site.affinity / site.affinity)
                if abs(delta) >= 0.2 or first == 0:
                    continue
                exact = render_signals(4_000, after_elements, grammar, np.float64)[channel, lo:hi].sum() - before
                assert exact == pytest.approx(first, rel=0.15, abs=1e-9)
                checked[channel] += 1
    assert checked[0] >= 5 and checked[1] >= 5, checked


def test_sample_data_regenerates_from_its_config(tmp_path):
    make = load_script("make_sample_genome")
    config = json.loads((ROOT / "configs" / "sample_genome.json").read_text())
    chromosomes = make.simulate_genome(config)
    make.write_fasta(chromosomes, tmp_path / "genome.fa", config["line_width"])
    make.write_truth(chromosomes, tmp_path / "truth_elements.bed", tmp_path / "truth_motifs.bed")
    for name in ("genome.fa", "truth_elements.bed", "truth_motifs.bed"):
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name
    for index, channel in enumerate(CHANNELS):
        with pyBigWig.open(str(SAMPLE / f"{channel}.bw")) as bw:
            for chromosome in chromosomes:
                stored = np.asarray(bw.values(chromosome.name, 0, len(chromosome.sequence)), dtype=np.float32)
                np.testing.assert_array_equal(stored, chromosome.signals[index])
    regions = make.showcase_regions(chromosomes, config["region_flank"])
    assert "".join(f"{c}\t{s}\t{e}\t{n}\n" for c, s, e, n in regions) == (SAMPLE / "regions.bed").read_text()
    make.write_variants(chromosomes, tmp_path / "variants.vcf", np.random.default_rng(config["seed"] + 1), config["background_variants"])
    assert (tmp_path / "variants.vcf").read_text() == (SAMPLE / "variants.vcf").read_text()


def test_sample_genome_has_distal_pairs_without_insulators_between():
    """Each distal pair: 20-45 kb apart, nothing (no insulator, no other enhancer) between
    them, and the partner raises its promoter at least 1.5-fold over the basal level."""
    elements = read_truth_elements(SAMPLE / "truth_elements.bed")
    by_name = {e.name: e for e in elements}
    pairs = [(e, by_name[e.distal_partner]) for e in elements if e.role == "promoter" and e.distal_partner]
    assert len(pairs) >= 5
    centre = lambda e: (e.start + e.end) // 2  # noqa: E731
    for promoter, enhancer in pairs:
        lo, hi = sorted([centre(promoter), centre(enhancer)])
        assert 20_000 <= hi - lo <= 45_500
        between = [e for e in elements if e.chrom == promoter.chrom and lo < centre(e) < hi]
        assert not [e for e in between if e.role in ("insulator", "enhancer")]
        grammar = Grammar()
        silenced = any(
            e.role == "silencer" and e.chrom == promoter.chrom and abs(centre(e) - centre(promoter)) <= grammar.silencer_range
            for e in elements
        )
        alone = promoter.strength * grammar.basal * (grammar.silencer_factor if silenced else 1.0)
        assert promoter.activity > 1.5 * alone


def test_distal_pair_promoter_has_a_guarding_insulator_on_its_other_side():
    layout = Layout(promoter_every=1e9, enhancer_every=5_000, insulator_every=1e9, silencer_every=1e9, distal_pairs=3)
    chromosome = simulate_chromosome("chrT", 200_000, np.random.default_rng(3), layout)
    elements = chromosome.elements
    pairs = [(p, elements[p.distal_partner]) for p in elements if p.role == "promoter" and p.distal_partner is not None]
    assert len(pairs) == 3
    guarded = 0
    for promoter, enhancer in pairs:
        side = 1 if enhancer.centre > promoter.centre else -1
        lo, hi = sorted([promoter.centre, enhancer.centre])
        assert not [e for e in elements if lo < e.centre < hi and e.role in ("enhancer", "insulator")]
        guards = [e for e in elements if e.role == "insulator" and 800 <= (promoter.centre - e.centre) * side <= 3_300]
        guarded += bool(guards)
        # the guard blocks everything on its far side: dropping those elements changes nothing
        if guards:
            full = promoter.activity
            near_side = [e for e in elements if (e.centre - guards[0].centre) * side >= 0]
            promoter_activities(near_side, Grammar())
            assert promoter.activity == pytest.approx(full)
            assert any(e.role == "enhancer" for e in elements if (e.centre - guards[0].centre) * side < 0)
    assert guarded >= 2
