"""Evaluate a track model against the sample genome's planted truth.

    python -m bench.evaluate_builtin [--model builtin] [--sample sample_data] [--out FILE]

The sample genome is never used in training (scripts/train_builtin.py simulates
its own chromosomes), so everything here is held out. Reports, as JSON:
- prediction: Pearson r per channel over every position of every chromosome
  (N runs excluded), outputs from pgf's tiled forward sweep;
- motif_auroc: AUROC of |input x gradient| (target: accessibility summed over each
  whole chromosome, pgf's adjoint engine) for bases of planted motifs against
  background bases >= 200 bp from any planted element;
- distal_enhancers: for every promoter with its paired enhancer >= 20 kb away, the
  gradient of its expression (summed over promoter centre +- 100 bp) over the
  showcase region; where the enhancer's strongest motif base ranks among the
  region's |input x gradient| values, and the mean attribution of enhancer motif
  bases relative to background;
- taylor_ism: Pearson of first-order (Taylor) ISM with exact ISM (all 3 alternatives
  at every base of 200-bp windows centred on planted elements; f = the element's
  channel summed over the window, on a 1-kb context), and the same Pearson for the
  simulator's own truth on those windows (`truth_pearson`: what a model that had learned
  the grammar exactly would score; a mutation acts only through its site's affinity).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pyBigWig
import torch

from bench.results_io import git_commit

from pgf.engine import PositionReadout, TiledEngine
from pgf.io.genome import Genome
from pgf.io.onehot import one_hot
from pgf.io.regions import Region
from pgf.models.registry import load_model
from pgf.models.targets import parse_target
from pgf.sim.grammar import ENHANCER_WEIGHTS, PROMOTER_WEIGHTS, Grammar, site_affinity
from pgf.sim.motifs import load_motifs, reverse_complement
from pgf.sim.truth import read_truth_elements, read_truth_motifs

ROOT = Path(__file__).resolve().parents[1]
DISTAL_MIN = 20_000
ISM_WINDOW = 200
ISM_CONTEXT = 1_000
AUROC_CHANNEL = "accessibility"  # every planted element acts on it (expression only near promoters)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64) - a.mean(), b.astype(np.float64) - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties count one half)."""
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="stable")
    ranks = np.empty(scores.size, dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks of tied groups
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [scores.size]])
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2
    n_pos, n_neg = positive.size, negative.size
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def region_onehot(genome: Genome, chrom: str, start: int, end: int) -> torch.Tensor:
    return torch.from_numpy(one_hot(genome.fetch(Region(chrom, start, end)))).float().unsqueeze(0)


def predictions(model, onehot: torch.Tensor) -> np.ndarray:
    """(L, C) track outputs by the tiled forward sweep."""
    out = TiledEngine().forward(model, onehot, PositionReadout(lambda outputs, _onehot, _offset: outputs["track"]))
    return out[0].numpy()


def input_x_gradient(model, onehot: torch.Tensor, target, region_start: int = 0) -> np.ndarray:
    """Input x gradient (the gradient at the observed base) of `target`, for a region starting at genome position `region_start`."""
    result = TiledEngine().gradient(model, onehot, target.readout([region_start]))
    return (result.gradient[0] * onehot[0]).sum(dim=-1).numpy()


def evaluate(model_spec: str, sample: Path) -> dict:
    loaded = load_model(model_spec)
    model = loaded.model
    channels = list(model.output_channels["track"])
    genome = Genome(sample / "genome.fa")
    elements = read_truth_elements(sample / "truth_elements.bed")
    motifs = read_truth_motifs(sample / "truth_motifs.bed")
    chroms = list(genome.chrom_sizes)
    shown = sample.resolve().relative_to(ROOT) if sample.resolve().is_relative_to(ROOT) else sample
    result: dict = {"model": loaded.info.model_id, "checksum": loaded.info.checksum, "sample": str(shown)}

    # prediction and genome-wide attributions, one chromosome at a time
    truth_pred: dict[str, list] = {c: [[], []] for c in channels}
    positives: list[np.ndarray] = []
    negatives: list[np.ndarray] = []
    started = time.perf_counter()
    for chrom in chroms:
        length = genome.chrom_sizes[chrom]
        onehot = region_onehot(genome, chrom, 0, length)
        called = onehot[0].sum(dim=-1).numpy() > 0
        predicted = predictions(model, onehot)
        for index, channel in enumerate(channels):
            with pyBigWig.open(str(sample / f"{channel}.bw")) as bw:
                truth = np.nan_to_num(np.asarray(bw.values(chrom, 0, length), dtype=np.float64))
            truth_pred[channel][0].append(truth[called])
            truth_pred[channel][1].append(predicted[called, index])
        in_motif = np.zeros(length, dtype=bool)
        for m in (m for m in motifs if m.chrom == chrom):
            in_motif[m.start : m.end] = True
        near_element = np.zeros(length, dtype=bool)
        for e in (e for e in elements if e.chrom == chrom):
            near_element[max(0, e.start - 200) : e.end + 200] = True
        background = ~near_element & called
        scores = np.abs(input_x_gradient(model, onehot, parse_target(f"sum:{AUROC_CHANNEL}", model)))
        positives.append(scores[in_motif])
        negatives.append(scores[background])
    result["prediction_pearson"] = {
        c: round(pearson(np.concatenate(t), np.concatenate(p)), 4) for c, (t, p) in truth_pred.items()
    }
    result["motif_auroc"] = {
        "target": f"sum:{AUROC_CHANNEL}",
        "auroc": round(auroc(np.concatenate(positives), np.concatenate(negatives)), 4),
        "motif_bases": int(sum(p.size for p in positives)),
        "background_bases": int(sum(n.size for n in negatives)),
    }
    result["genome_wide_seconds"] = round(time.perf_counter() - started, 1)

    result["distal_enhancers"] = distal_enhancers(model, genome, elements, motifs, sample)
    result["taylor_ism"] = taylor_vs_ism(model, genome, elements, motifs, channels)
    return result


def distal_enhancers(model, genome: Genome, elements, motifs, sample: Path) -> dict:
    by_name = {e.name: e for e in elements}
    regions = [line.split("\t") for line in (sample / "regions.bed").read_text().splitlines() if line.strip()]
    cases = []
    for chrom, start, end, name in regions:
        start, end = int(start), int(end)
        promoter = by_name[name.split("_with_")[0]]
        enhancer = by_name[promoter.distal_partner]
        centre = (promoter.start + promoter.end) // 2
        distance = abs(centre - (enhancer.start + enhancer.end) // 2)
        if distance < DISTAL_MIN:
            continue
        target = parse_target("sum:expression", model).with_window(chrom, centre - 100, centre + 100)
        onehot = region_onehot(genome, chrom, start, end)
        scores = np.abs(input_x_gradient(model, onehot, target, start))
        assert scores.max() > 0, f"no attribution at all in {chrom}:{start + 1}-{end}"
        enhancer_bases = np.zeros(end - start, dtype=bool)
        promoter_bases = np.zeros(end - start, dtype=bool)
        for m in motifs:
            if m.element == enhancer.name:
                enhancer_bases[m.start - start : m.end - start] = True
            if m.element == promoter.name:
                promoter_bases[m.start - start : m.end - start] = True
        near = np.zeros(end - start, dtype=bool)
        for e in (e for e in elements if e.chrom == chrom and e.end > start and e.start < end):
            near[max(0, e.start - 200 - start) : max(0, e.end + 200 - start)] = True
        background = scores[~near]
        order = np.argsort(-scores, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(1, order.size + 1)
        cases.append(
            {
                "promoter": promoter.name,
                "enhancer": enhancer.name,
                "distance_bp": int(distance),
                "region": f"{chrom}:{start + 1}-{end}",
                "region_length": end - start,
                "best_enhancer_base_rank": int(rank[enhancer_bases].min()),
                "best_promoter_base_rank": int(rank[promoter_bases].min()),
                "enhancer_in_top_1_percent": bool(rank[enhancer_bases].min() <= 0.01 * (end - start)),
                "enhancer_to_background_ratio": round(float(scores[enhancer_bases].mean() / background.mean()), 2),
                "promoter_to_background_ratio": round(float(scores[promoter_bases].mean() / background.mean()), 2),
            }
        )
    return {
        "cases": cases,
        "enhancers_in_top_1_percent": sum(c["enhancer_in_top_1_percent"] for c in cases),
        "n_cases": len(cases),
    }


def _site_height(site, channel: str, grammar: Grammar) -> float:
    """The truth's bump height of a planted site at affinity 1 (promoter expression up to
    the promoter's common factor, which cancels within a window)."""
    weight = PROMOTER_WEIGHTS.get(site.name, 0.0) + ENHANCER_WEIGHTS.get(site.name, 0.0)
    if channel == "expression":
        return PROMOTER_WEIGHTS.get(site.name, 0.0)
    return {"CTCF": grammar.insulator_accessibility, "REST": grammar.silencer_accessibility}.get(site.name, 0.5 * weight)


def truth_taylor_vs_ism(genome: Genome, motifs, chrom: str, lo: int, hi: int, channel: str) -> tuple[np.ndarray, np.ndarray]:
    """First-order and exact ISM of the truth (`channel` summed over [lo, hi)), every SNV in
    order (position, then alternative base): a mismatch at a planted site scales its
    affinity by exp(scale x delta log P), its bump by the same factor; elsewhere nothing."""
    grammar, matrices = Grammar(), load_motifs()
    sequence = genome.fetch(Region(chrom, lo, hi)).upper()
    width = grammar.expression_width if channel == "expression" else grammar.accessibility_width
    positions = np.arange(lo, hi)
    site_scale = {}  # a site's contribution to the window's sum: height x affinity x bump mass inside
    for site in (m for m in motifs if m.chrom == chrom and m.end > lo and m.start < hi):
        centre = (site.start + site.end) // 2
        bump = np.exp(-0.5 * ((positions - centre) / width) ** 2)
        inside = bump[np.abs(positions - centre) <= int(4 * width)].sum()
        instance = genome.fetch(Region(chrom, site.start, site.end)).upper()
        instance = reverse_complement(instance) if site.strand == "-" else instance
        affinity = site_affinity(matrices[site.name], instance, grammar.affinity_scale)  # unrounded
        site_scale[site] = _site_height(site, channel, grammar) * affinity * inside
    taylor, exact = [], []
    for position, ref in zip(positions, sequence):
        if ref not in "ACGT":
            continue
        site = next((m for m in site_scale if m.start <= position < m.end), None)
        for alt in "ACGT".replace(ref, ""):
            if site is None:
                taylor.append(0.0)
                exact.append(0.0)
                continue
            column, r, a = position - site.start, ref, alt
            if site.strand == "-":
                column, r, a = site.end - 1 - position, reverse_complement(ref), reverse_complement(alt)
            log_p = np.log(matrices[site.name].probabilities[column])
            delta = grammar.affinity_scale * (log_p["ACGT".index(a)] - log_p["ACGT".index(r)])
            taylor.append(site_scale[site] * delta)
            exact.append(site_scale[site] * np.expm1(delta))
    return np.array(taylor), np.array(exact)


def taylor_vs_ism(model, genome: Genome, elements, motifs, channels: list[str]) -> dict:
    """Exact ISM of every SNV in 200-bp windows vs g[alt] - g[ref]."""
    picks = []
    for role, channel, count in (("promoter", "expression", 2), ("enhancer", "accessibility", 2), ("insulator", "accessibility", 1)):
        picks += [(e, channel) for e in elements if e.role == role][:count]
    windows = []
    all_taylor, all_exact, all_truth = [], [], []
    for element, channel in picks:
        centre = (element.start + element.end) // 2
        lo = max(0, centre - ISM_CONTEXT // 2)
        hi = min(genome.chrom_sizes[element.chrom], lo + ISM_CONTEXT)
        onehot = region_onehot(genome, element.chrom, lo, hi)
        w_lo = centre - ISM_WINDOW // 2 - lo
        target = parse_target(f"sum:{channel}", model).with_window(element.chrom, lo + w_lo, lo + w_lo + ISM_WINDOW)
        gradient = TiledEngine().gradient(model, onehot, target.readout([lo])).gradient[0]
        with torch.no_grad():
            reference_value = float(target.contributions(model(onehot), onehot, [lo]).sum())
        taylor, mutants = [], []
        for position in range(w_lo, w_lo + ISM_WINDOW):
            ref = int(onehot[0, position].argmax()) if onehot[0, position].sum() > 0 else None
            if ref is None:
                continue
            for alt in range(4):
                if alt != ref:
                    taylor.append(float(gradient[position, alt] - gradient[position, ref]))
                    mutant = onehot[0].clone()
                    mutant[position] = 0
                    mutant[position, alt] = 1
                    mutants.append(mutant)
        exact = []
        with torch.no_grad():
            for s in range(0, len(mutants), 60):
                batch = torch.stack(mutants[s : s + 60])
                values = target.contributions(model(batch), batch, [lo] * batch.shape[0]).sum(dim=1)
                exact += (values - reference_value).tolist()
        taylor_np, exact_np = np.array(taylor), np.array(exact)
        truth_taylor, truth_exact = truth_taylor_vs_ism(genome, motifs, element.chrom, lo + w_lo, lo + w_lo + ISM_WINDOW, channel)
        windows.append({"element": element.name, "channel": channel, "pearson": round(pearson(taylor_np, exact_np), 4),
                        "truth_pearson": round(pearson(truth_taylor, truth_exact), 4)})
        all_truth.append((truth_taylor, truth_exact))
        all_taylor.append(taylor_np)
        all_exact.append(exact_np)
    return {
        "windows": windows,
        "pooled_pearson": round(pearson(np.concatenate(all_taylor), np.concatenate(all_exact)), 4),
        "mean_window_pearson": round(float(np.mean([w["pearson"] for w in windows])), 4),
        "truth_pooled_pearson": round(pearson(*(np.concatenate(parts) for parts in zip(*all_truth))), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--sample", type=Path, default=ROOT / "sample_data")
    parser.add_argument("--out", type=Path, help="write the JSON here too")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = evaluate(args.model, args.sample)
    result["environment"] = {
        "torch": torch.__version__, "python": sys.version.split()[0], "machine": platform.machine(),
        "threads": args.threads, "git_commit": git_commit(), "seconds": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
