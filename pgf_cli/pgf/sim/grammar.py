"""The simulated regulatory grammar: planted elements and the signals they cause.

Elements (each built from JASPAR motif instances, see motifs.json):
- promoter: 1-3 core motifs (TBP, SP2, NFYA) in 150 bp; base strength = sum of motif
  weight x affinity
- enhancer: 2-4 motifs (FOSL1::JUN, CEBPB, FOXA1, HNF1A) in 200 bp; strength = sum of
  weight x affinity
- insulator: one CTCF site; it splits the chromosome into domains
- silencer: one REST site; it represses promoters within `silencer_range` (short range)

Long-range rule: a promoter's activity is

    base * silencing * (basal + max_boost * tanh(E / max_boost)),
    E = sum over enhancers e in the SAME domain of s_e * exp(-|d_e| / decay_length)

so an enhancer tens of kb away raises it unless a CTCF site lies between them;
the boost grows linearly for one weak enhancer and saturates at max_boost. With
the default basal 0.25 a promoter without enhancers is nearly silent: most of
the variation of `expression` comes from enhancers, as for enhancer-dependent
genes (a small basal share keeps the long-range rule from being a footnote a
model can ignore).
Two per-position tracks, as bumps on the planted motif sites: `expression`
(a promoter's activity shared among its sites by weight x affinity) and
`accessibility` (every site's own height x affinity: short range).

A site's affinity is exp(affinity_scale x m), m = log P(instance) - log P(consensus)
under its matrix (m <= 0): planted instances (m mostly -2..0) count mostly 0.4-1, and
a mismatch lowers the site's effect by what it costs in the matrix, as for binding
energies, instead of the all-or-nothing of a fixed weight (a CTCF site's blocking and
a REST site's silencing stay all-or-nothing; their accessibility is graded). Graded
sites make the truth a smooth function of each motif's bases, which a model must
then learn (a model fitted to all-or-nothing sites was a step function of its
motifs: first-order ISM estimates did not track exact ISM at a TATA box).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pgf.sim.background import BASES, markov_background
from pgf.sim.elements import (  # noqa: F401  (the grammar's records, also imported from here)
    CHANNELS,
    ENHANCER_WEIGHTS,
    PROMOTER_WEIGHTS,
    Element,
    Grammar,
    Layout,
    MotifSite,
    SimulatedChromosome,
    site_affinity,
)
from pgf.sim.motifs import Motif, load_motifs, reverse_complement


class _Occupancy:
    """Planted intervals, kept `gap` bp apart."""

    def __init__(self, length: int, gap: int):
        self.length, self.gap, self.intervals = length, gap, []

    def free(self, start: int, end: int) -> bool:
        if start < self.gap or end > self.length - self.gap:
            return False
        return all(end + self.gap <= s or start >= e + self.gap for s, e in self.intervals)

    def take(self, start: int, end: int) -> None:
        self.intervals.append((start, end))

    def place(self, rng: np.random.Generator, size: int, lo: int = 0, hi: int | None = None, tries: int = 200) -> int | None:
        hi = self.length - size if hi is None else min(hi, self.length - size)
        for _ in range(tries):
            if hi <= lo:
                return None
            start = int(rng.integers(lo, hi))
            if self.free(start, start + size):
                self.take(start, start + size)
                return start
        return None


def _plant_sites(
    rng: np.random.Generator, bases: list[str], start: int, size: int, motifs: list[Motif], affinity_scale: float,
    sharpness: tuple[float, float] = (3.0, 3.0), partial_sites: float = 0.0,
) -> list[MotifSite]:
    """Write motif instances (random strand, non-overlapping) inside [start, start + size)."""
    sites: list[MotifSite] = []
    for motif in motifs:
        for _ in range(100):
            offset = start + int(rng.integers(0, size - motif.length + 1))
            if all(offset + motif.length <= s.start or offset >= s.end for s in sites):
                break
        else:
            continue
        low, high = sharpness
        instance = motif.sample(rng, low if low == high else float(rng.uniform(low, high)))
        if partial_sites > 0 and rng.random() < partial_sites:
            half = motif.length // 2
            redrawn = "".join(BASES[rng.integers(0, 4, half)])
            instance = redrawn + instance[half:] if rng.random() < 0.5 else instance[:-half] + redrawn
        affinity = site_affinity(motif, instance, affinity_scale)
        strand = "+" if rng.random() < 0.5 else "-"
        if strand == "-":
            instance = reverse_complement(instance)
        bases[offset : offset + motif.length] = list(instance)
        sites.append(MotifSite(motif.name, motif.matrix_id, offset, offset + motif.length, strand, affinity))
    return sorted(sites, key=lambda s: s.start)


def _choose(rng: np.random.Generator, names: list[str], low: int, high: int, repeat: bool) -> list[str]:
    count = int(rng.integers(low, high + 1))
    return [str(n) for n in rng.choice(names, size=count, replace=repeat)]


def _strength(role: str, sites: list[MotifSite]) -> float:
    """An element's strength: the sum of its motifs' weight x affinity (0 for insulators
    and silencers, which act by their presence)."""
    weights = PROMOTER_WEIGHTS if role == "promoter" else ENHANCER_WEIGHTS if role == "enhancer" else {}
    return float(sum(weights.get(s.name, 0.0) * s.affinity for s in sites))


def _make_element(
    role: str, rng: np.random.Generator, bases: list[str], start: int, grammar: Grammar, layout: Layout
) -> Element:
    motifs = load_motifs()
    if role == "promoter":
        names = ["TBP"] + _choose(rng, ["SP2", "NFYA"], 0, 2, repeat=True) if rng.random() < 0.6 else _choose(rng, ["SP2", "NFYA"], 1, 3, repeat=True)
        size = 150
    elif role == "enhancer":
        names = _choose(rng, list(ENHANCER_WEIGHTS), 2, 4, repeat=True)
        size = 200
    elif role == "insulator":
        names, size = ["CTCF"], 40
    else:
        names, size = ["REST"], 40
    sites = _plant_sites(rng, bases, start, size, [motifs[n] for n in names], grammar.affinity_scale,
                         layout.site_sharpness, layout.partial_sites)
    return Element(role, start, start + size, sites, strength=_strength(role, sites))


_SIZES = {"promoter": 150, "enhancer": 200, "insulator": 40, "silencer": 40}


def _place_outside(
    occupancy: _Occupancy, rng: np.random.Generator, size: int, spans: list[tuple[int, int]], tries: int = 50
) -> int | None:
    """Place an element of `size` bp at least 100 bp outside every one of `spans`."""
    for _ in range(tries):
        start = occupancy.place(rng, size, tries=1)
        if start is None:
            continue
        if any(lo - 100 < start + size and start < hi + 100 for lo, hi in spans):
            occupancy.intervals.remove((start, start + size))
            continue
        return start
    return None


def layout_elements(
    length: int, rng: np.random.Generator, layout: Layout, bases: list[str], reserved: list[tuple[int, int]] = (),
    grammar: Grammar = Grammar(),
) -> list[Element]:
    """Place elements (writing their motifs into `bases`) outside the `reserved` intervals
    and return them sorted by start."""
    occupancy = _Occupancy(length, layout.min_gap)
    for start, end in reserved:
        occupancy.take(start, end)
    elements: list[Element] = []
    pair_spans: list[tuple[int, int]] = []

    # distal pairs: a promoter, its enhancer 20-45 kb to one side with no other enhancer
    # and no insulator between them, and a CTCF site 1-3 kb on the promoter's other side
    # so that the partner is the promoter's only enhancer; pairs do not overlap
    attempts = 0
    while len(pair_spans) < layout.distal_pairs and attempts < 20 * layout.distal_pairs:
        attempts += 1
        distance = int(rng.integers(*layout.distal_range))
        direction = 1 if rng.random() < 0.5 else -1
        promoter_start = occupancy.place(rng, _SIZES["promoter"])
        if promoter_start is None:
            break
        target = promoter_start + direction * distance
        enhancer_start = occupancy.place(rng, _SIZES["enhancer"], lo=target - 500, hi=target + 500)
        span = (min(promoter_start, target - 500), max(promoter_start, target + 500) + _SIZES["enhancer"])
        if enhancer_start is None or any(span[0] < hi + 1_000 and lo - 1_000 < span[1] for lo, hi in pair_spans):
            occupancy.intervals.remove((promoter_start, promoter_start + _SIZES["promoter"]))
            if enhancer_start is not None:
                occupancy.intervals.remove((enhancer_start, enhancer_start + _SIZES["enhancer"]))
            continue
        promoter = _make_element("promoter", rng, bases, promoter_start, grammar, layout)
        enhancer = _make_element("enhancer", rng, bases, enhancer_start, grammar, layout)
        promoter.distal_partner, enhancer.distal_partner = len(elements) + 1, len(elements)
        elements += [promoter, enhancer]
        pair_spans.append((min(promoter_start, enhancer_start), max(promoter_start, enhancer_start) + _SIZES["enhancer"]))
        guard = promoter_start - direction * int(rng.integers(1_000, 3_000))
        guard_start = occupancy.place(rng, _SIZES["insulator"], lo=guard - 200, hi=guard + 200)
        if guard_start is not None:
            elements.append(_make_element("insulator", rng, bases, guard_start, grammar, layout))

    counts = {
        role: int(rng.poisson(length / every))
        for role, every in (
            ("promoter", layout.promoter_every),
            ("enhancer", layout.enhancer_every),
            ("insulator", layout.insulator_every),
            ("silencer", layout.silencer_every),
        )
    }
    for role in ("promoter", "silencer"):
        for _ in range(counts[role]):
            start = occupancy.place(rng, _SIZES[role])
            if start is not None:
                elements.append(_make_element(role, rng, bases, start, grammar, layout))
    # never between the members of a distal pair: no insulator (it would block the pair)
    # and no other enhancer (the pair's promoter owes its activity to its partner)
    for role in ("enhancer", "insulator"):
        for _ in range(counts[role]):
            start = _place_outside(occupancy, rng, _SIZES[role], pair_spans)
            if start is not None:
                elements.append(_make_element(role, rng, bases, start, grammar, layout))
    for promoter in [e for e in elements if e.role == "promoter"]:
        if rng.random() < layout.silencer_near_promoter:
            offset = int(rng.integers(300, 900)) * (1 if rng.random() < 0.5 else -1)
            lo = promoter.centre + offset - 20
            start = occupancy.place(rng, _SIZES["silencer"], lo=lo, hi=lo + 1, tries=1)
            if start is not None:
                elements.append(_make_element("silencer", rng, bases, start, grammar, layout))

    order = sorted(range(len(elements)), key=lambda i: elements[i].start)
    new_index = {old: new for new, old in enumerate(order)}
    for element in elements:
        if element.distal_partner is not None:
            element.distal_partner = new_index[element.distal_partner]
    return [elements[i] for i in order]


def promoter_activities(elements: list[Element], grammar: Grammar) -> None:
    """Set every promoter's `activity` from the grammar (in place)."""
    insulators = np.array(sorted(e.centre for e in elements if e.role == "insulator"), dtype=np.int64)
    enhancers = [e for e in elements if e.role == "enhancer"]
    silencers = np.array([e.centre for e in elements if e.role == "silencer"], dtype=np.int64)
    enhancer_centres = np.array([e.centre for e in enhancers], dtype=np.int64)
    enhancer_strengths = np.array([e.strength for e in enhancers])
    enhancer_domains = np.searchsorted(insulators, enhancer_centres)
    for promoter in (e for e in elements if e.role == "promoter"):
        domain = np.searchsorted(insulators, promoter.centre)
        same = enhancer_domains == domain
        distance = np.abs(enhancer_centres[same] - promoter.centre)
        boost = float(np.sum(enhancer_strengths[same] * np.exp(-distance / grammar.decay_length)))
        silenced = silencers.size and np.min(np.abs(silencers - promoter.centre)) <= grammar.silencer_range
        saturated = grammar.max_boost * np.tanh(boost / grammar.max_boost)
        promoter.activity = promoter.strength * (grammar.silencer_factor if silenced else 1.0) * (grammar.basal + saturated)


def _add_bump(track: np.ndarray, centre: int, height: float, width: float) -> None:
    reach = int(4 * width)
    lo, hi = max(0, centre - reach), min(track.size, centre + reach + 1)
    offsets = np.arange(lo, hi) - centre
    track[lo:hi] += height * np.exp(-0.5 * (offsets / width) ** 2)


def _site_weight(site: MotifSite) -> float:
    """A promoter or enhancer motif's weight x its affinity."""
    return (PROMOTER_WEIGHTS.get(site.name, 0.0) + ENHANCER_WEIGHTS.get(site.name, 0.0)) * site.affinity


def render_signals(length: int, elements: list[Element], grammar: Grammar, dtype: type = np.float32) -> np.ndarray:
    """The (2, L) tracks (float32 unless `dtype`), as bumps centred on the planted motif sites (positions
    the sequence itself reveals): `expression` puts a promoter's activity on its sites in
    proportion to their weights x affinities; `accessibility` is each site's own contribution
    (half its weight x affinity for promoter and enhancer motifs, fixed heights x affinity
    for CTCF and REST)."""
    signals = np.zeros((len(CHANNELS), length), dtype=np.float64)
    for element in elements:
        for site in element.sites:
            centre = (site.start + site.end) // 2
            if element.role == "promoter" and element.strength > 0:
                share = element.activity * _site_weight(site) / element.strength
                _add_bump(signals[0], centre, share, grammar.expression_width)
            if element.role in ("promoter", "enhancer"):
                height = 0.5 * _site_weight(site)
            elif element.role == "insulator":
                height = grammar.insulator_accessibility * site.affinity
            else:
                height = grammar.silencer_accessibility * site.affinity
            _add_bump(signals[1], centre, height, grammar.accessibility_width)
    return signals.astype(dtype)


def rescore_elements(elements: list[Element], sequence: str, grammar: Grammar) -> list[Element]:
    """Copies of `elements` as they act on an edited `sequence` (same coordinates): every
    planted site's affinity from its bases there, strengths and promoter activities
    recomputed. Edits outside planted sites change nothing: the truth counts planted
    sites only, so an edit that creates a motif match elsewhere has no effect."""
    motifs = load_motifs()
    rescored = []
    for element in elements:
        sites = []
        for site in element.sites:
            instance = sequence[site.start : site.end].upper()
            instance = reverse_complement(instance) if site.strand == "-" else instance
            sites.append(replace(site, affinity=site_affinity(motifs[site.name], instance, grammar.affinity_scale)))
        rescored.append(replace(element, sites=sites, strength=_strength(element.role, sites)))
    promoter_activities(rescored, grammar)
    return rescored


def first_order_snv_effects(
    elements: list[Element], sequence: str, grammar: Grammar, channel: int, lo: int, hi: int, step: float = 1e-4,
) -> np.ndarray:
    """(L, 4) first-order effect on the truth's `channel` summed over [lo, hi) of setting each
    position to each base (A C G T; 0 at the reference base and outside planted sites):
    dS/d(log affinity) of the site, by a central difference of `step`, times the change of
    log affinity the SNV makes (affinity_scale x the matrix's log-probability change).
    The truth's own first-order ISM, for every SNV at once."""
    motifs = load_motifs()
    length = len(sequence)
    effects = np.zeros((length, 4))
    codes = np.array(["ACGT".find(b) for b in sequence.upper()])

    def window_sum(index: int, site_index: int, factor: float) -> float:
        edited = [replace(e) for e in elements]  # promoter_activities writes into them
        element = elements[index]
        sites = list(element.sites)
        sites[site_index] = replace(sites[site_index], affinity=sites[site_index].affinity * factor)
        edited[index] = replace(element, sites=sites, strength=_strength(element.role, sites))
        promoter_activities(edited, grammar)
        return float(render_signals(length, edited, grammar, np.float64)[channel, lo:hi].sum())

    for index, element in enumerate(elements):
        for site_index, site in enumerate(element.sites):
            slope = (window_sum(index, site_index, np.exp(step)) - window_sum(index, site_index, np.exp(-step))) / (2 * step)
            if slope == 0.0:
                continue
            log_p = np.log(motifs[site.name].probabilities)  # (motif length, 4) on the motif's strand
            if site.strand == "-":
                log_p = log_p[::-1, ::-1]  # reverse complement: reversed columns, A<->T and C<->G
            positions = np.arange(site.start, site.end)
            reference = codes[positions]
            known = reference >= 0
            change = log_p - log_p[np.arange(len(positions)), reference.clip(min=0)][:, None]
            effects[positions[known]] = slope * grammar.affinity_scale * change[known]
    return effects


def simulate_chromosome(
    name: str,
    length: int,
    rng: np.random.Generator,
    layout: Layout = Layout(),
    grammar: Grammar = Grammar(),
    gc_content: float = 0.41,
    reserved: list[tuple[int, int]] = (),
) -> SimulatedChromosome:
    """Background, planted elements, their activities and the two signal tracks.
    No element is planted in (or within `layout.min_gap` of) a `reserved` interval."""
    bases = list(BASES[markov_background(length, rng, gc_content)])
    elements = layout_elements(length, rng, layout, bases, reserved, grammar)
    promoter_activities(elements, grammar)
    return SimulatedChromosome(name, "".join(bases), render_signals(length, elements, grammar), elements)
