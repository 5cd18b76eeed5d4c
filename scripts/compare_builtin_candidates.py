"""Choose between trained built-in candidates without looking at the sample genome.

    python scripts/compare_builtin_candidates.py DIR_A DIR_B ...

Each candidate predicts three 200-kb chromosomes simulated with the sample genome's
layout (pgf.sim.grammar.Layout defaults, one distal pair each) from a seed of their
own (not the sample genome's, not a training seed); prints per-channel Pearson r and
the effect of scrambling each distal pair's enhancer on its promoter's predicted
expression next to the true effect, and the same for enhancers 0.3-1.5 kb from a
promoter in the training script's short windows (shuffled in place; the cases whose
true ratio is below 0.5), and the Pearson of first-order (Taylor) ISM with exact ISM on
200-bp windows of those chromosomes (a promoter's expression, an enhancer's and an
insulator's accessibility per chromosome; autograd, 1-kb context). Training runs use
different validation windows,
so their training logs cannot be compared with each other; this can.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pgf.io.onehot import one_hot
from pgf.models.registry import load_checkpoint
from pgf.sim.grammar import CHANNELS, Grammar, Layout, promoter_activities, simulate_chromosome

SEED = 424242
LENGTH = 200_000
SHORT_WINDOWS = 12

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_builtin import short_layout, without_enhancers  # noqa: E402


def short_range_effects(model: torch.nn.Module) -> dict:
    """Shuffle each enhancer of a few short training-like windows (seed SEED + 2); for
    promoters whose true activity falls below half, the predicted ratio next to the true one."""
    rng = np.random.default_rng(SEED + 2)
    cases = []
    for _ in range(SHORT_WINDOWS):
        chromosome = simulate_chromosome("s", 2_048, rng, short_layout())
        with torch.no_grad():
            track = model(torch.from_numpy(one_hot(chromosome.sequence)).float()[None])["track"][0, :, 0].numpy()
        for index, enhancer in enumerate(chromosome.elements):
            if enhancer.role != "enhancer":
                continue
            sequence, signals = without_enhancers(chromosome, rng, [index])
            with torch.no_grad():
                without = model(torch.from_numpy(one_hot(sequence)).float()[None])["track"][0, :, 0].numpy()
            for promoter in (e for e in chromosome.elements if e.role == "promoter"):
                window = slice(max(0, promoter.start - 100), promoter.end + 100)
                true_ratio = float(signals[0, window].sum() / max(chromosome.signals[0, window].sum(), 1e-9))
                if true_ratio < 0.5:
                    cases.append({"distance": abs(promoter.centre - enhancer.centre), "true_ratio": round(true_ratio, 3),
                                  "predicted_ratio": round(float(without[window].sum() / track[window].sum()), 3)})
    return {"median_predicted_ratio": float(np.median([c["predicted_ratio"] for c in cases])) if cases else None,
            "cases": cases}


def taylor_vs_ism(model: torch.nn.Module, sequence: str, centre: int, channel: int) -> tuple[np.ndarray, np.ndarray]:
    """g[alt] - g[ref] and the exact change of `channel` summed over centre +- 100 bp, for
    every SNV in that window (context: the 1 kb around it)."""
    lo = max(0, min(centre - 500, len(sequence) - 1_000))
    onehot = torch.from_numpy(one_hot(sequence[lo : lo + 1_000])).float()
    window = slice(centre - 100 - lo, centre + 100 - lo)
    x = onehot[None].clone().requires_grad_(True)
    reference = model(x)["track"][0, window, channel].sum()
    (gradient,) = torch.autograd.grad(reference, x)
    taylor, mutants = [], []
    for position in range(window.start, window.stop):
        ref = int(onehot[position].argmax())
        for alt in (a for a in range(4) if a != ref):
            taylor.append(float(gradient[0, position, alt] - gradient[0, position, ref]))
            mutant = onehot.clone()
            mutant[position] = torch.eye(4)[alt]
            mutants.append(mutant)
    exact = []
    with torch.no_grad():
        for start in range(0, len(mutants), 60):
            values = model(torch.stack(mutants[start : start + 60]))["track"][:, window, channel].sum(dim=1)
            exact += (values - reference.detach()).tolist()
    return np.array(taylor), np.array(exact)


def taylor_check(model: torch.nn.Module, chromosomes) -> dict:
    windows, taylor, exact = [], [], []
    for chromosome in chromosomes[:2]:
        for role, channel in (("promoter", 0), ("enhancer", 1), ("insulator", 1)):
            element = next(e for e in chromosome.elements if e.role == role and e.centre > 600)
            t, x = taylor_vs_ism(model, chromosome.sequence, element.centre, channel)
            windows.append(round(pearson(t, x), 4))
            taylor.append(t)
            exact.append(x)
    return {"pooled_pearson": round(pearson(np.concatenate(taylor), np.concatenate(exact)), 4),
            "mean_window_pearson": round(float(np.mean(windows)), 4), "windows": windows}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(SEED)
    chromosomes = [simulate_chromosome(f"v{i}", LENGTH, rng, Layout(distal_pairs=1)) for i in range(3)]
    scramble = np.random.default_rng(SEED + 1)
    for path in args.candidates:
        model = load_checkpoint(path).model.eval()
        truth, predicted, effects = [], [], []
        for chromosome in chromosomes:
            onehot = torch.from_numpy(one_hot(chromosome.sequence)).float()[None]
            with torch.no_grad():
                track = model(onehot)["track"][0].numpy()
            truth.append(chromosome.signals.T)
            predicted.append(track)
            for promoter in (e for e in chromosome.elements if e.role == "promoter" and e.distal_partner is not None):
                enhancer = chromosome.elements[promoter.distal_partner]
                scrambled = onehot.clone()
                scrambled[0, enhancer.start : enhancer.end] = torch.from_numpy(
                    np.eye(4, dtype=np.float32)[scramble.integers(0, 4, enhancer.end - enhancer.start)]
                )
                with torch.no_grad():
                    without = model(scrambled)["track"][0, :, 0].numpy()
                centre = promoter.centre
                ratio = float(without[centre - 100 : centre + 100].sum() / track[centre - 100 : centre + 100, 0].sum())
                others = [e for e in chromosome.elements if e is not enhancer]
                copy = [replace(e) for e in others]  # promoter_activities sets .activity in place
                promoter_activities(copy, Grammar())
                alone = next(e for e in copy if e.start == promoter.start and e.role == "promoter")
                effects.append({"distance": abs(centre - enhancer.centre), "predicted_ratio": round(ratio, 3),
                                "true_ratio": round(alone.activity / promoter.activity, 3)})
        truth_np, predicted_np = np.concatenate(truth), np.concatenate(predicted)
        print(json.dumps({
            "candidate": path,
            "pearson": {c: round(pearson(truth_np[:, i], predicted_np[:, i]), 4) for i, c in enumerate(CHANNELS)},
            "distal_scramble": effects,
            "short_range_scramble": short_range_effects(model),
            "taylor_ism": taylor_check(model, chromosomes),
        }))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
