"""Choose between trained built-in candidates without looking at the sample genome.

    python scripts/compare_builtin_candidates.py DIR_A DIR_B ...

Each candidate predicts three 200-kb chromosomes simulated with the sample genome's
layout (pgf.sim.grammar.Layout defaults, one distal pair each) from a seed of their
own (not the sample genome's, not a training seed); prints per-channel Pearson r and
the effect of scrambling each distal pair's enhancer on its promoter's predicted
expression next to the true effect. Training runs use different validation windows,
so their training logs cannot be compared with each other; this can.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

import numpy as np
import torch

from pgf.io.onehot import one_hot
from pgf.models.registry import load_checkpoint
from pgf.sim.grammar import CHANNELS, Grammar, Layout, promoter_activities, simulate_chromosome

SEED = 424242
LENGTH = 200_000


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
        }))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
