"""How far a built-in candidate looks: mean |d expression(centre) / d one-hot| by distance.

    python scripts/sensitivity_by_distance.py pgf_cli/pgf/models/builtin
    python scripts/sensitivity_by_distance.py --fresh            # the training script's initialisation

Averages over a few random windows (centre = a promoter of a simulated chromosome
with the sample layout, so there is something to read) and prints one JSON line per
model: the mean absolute input gradient in distance bands, and each band relative to
the 0-8 bp band. A model that uses an enhancer 30 kb away needs a 10-50 kb band far
above zero; the freshly initialised model shows where training starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from pgf.io.onehot import one_hot
from pgf.models.registry import load_checkpoint
from pgf.sim.grammar import Layout, simulate_chromosome

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_builtin import build_model, model_config  # noqa: E402

BANDS = ((0, 8), (8, 50), (50, 200), (200, 1_000), (1_000, 5_000), (5_000, 10_000), (10_000, 50_000))
WINDOW = 65_536


def band_means(model: torch.nn.Module, windows: list[tuple[torch.Tensor, int]]) -> dict[str, float]:
    """Mean |gradient| of expression at each window's centre position, per distance band."""
    totals = {band: [0.0, 0] for band in BANDS}
    for onehot, centre in windows:
        onehot = onehot.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(model(onehot)["track"][0, centre, 0], onehot)
        gradient = gradient[0].abs().sum(-1).numpy()
        distance = np.abs(np.arange(gradient.size) - centre)
        for lo, hi in BANDS:
            inside = (distance >= lo) & (distance < hi)
            totals[(lo, hi)][0] += float(gradient[inside].sum())
            totals[(lo, hi)][1] += int(inside.sum())
    return {f"{lo}-{hi}": s / max(n, 1) for (lo, hi), (s, n) in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="*")
    parser.add_argument("--fresh", action="store_true", help="also the training script's freshly initialised model")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    windows = []
    while len(windows) < args.windows:
        chromosome = simulate_chromosome("w", WINDOW, rng, Layout())
        promoters = [e for e in chromosome.elements if e.role == "promoter" and 10_000 < e.centre < WINDOW - 10_000]
        if promoters:
            windows.append((torch.from_numpy(one_hot(chromosome.sequence)).float()[None], promoters[0].centre))
    models = [(path, load_checkpoint(path).model) for path in args.candidates]
    if args.fresh:
        models.append(("fresh initialisation", build_model(model_config(WINDOW), seed=1000)))
    for name, model in models:
        means = band_means(model.eval(), windows)
        local = means["0-8"]
        print(json.dumps({"model": name, "mean_abs_gradient": {k: float(f"{v:.3g}") for k, v in means.items()},
                          "relative_to_0-8": {k: float(f"{v / local:.3g}") for k, v in means.items()}}), flush=True)


if __name__ == "__main__":
    main()
