"""Seconds per training step of the built-in model, for each kind of window it trains on.

    python -m bench.training_steps [--threads 2] [--out FILE.json]

Times what bounds the ~60-min CPU recipe (scripts/train_builtin_recipe.py): one AdamW
step (loss, backward, update) of the 2-kb short batch, the 2-kb batch with input-gradient
matching (double backward), a paired 32-kb batch and a paired 64-kb batch on the sample
genome's layout, with the model of scripts/train_builtin.py. Prints one JSON line per
kind (median of a few steps after one warm-up step) and, with --out, writes them all with
the machine, torch version and commit. Run from the repository root. Compare two versions of the code by running this at
each in turn on the same machine, nothing else running.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench.results_io import git_commit
from scripts import train_builtin as tb

KINDS = ("short", "short_taylor", "paired_32k", "paired_64k_genome")


def window_kinds(rng: np.random.Generator) -> dict[str, tb.WindowKind]:
    """The window kinds of the recipe's phases, with their loss scales from pilot data."""
    grammar = tb.Grammar()
    short = tb.window_kind(rng, 2048, 4, tb.short_layout(), False, grammar)
    return {
        "short": short,
        "short_taylor": tb.with_taylor_targets(rng, short),
        "paired_32k": tb.window_kind(rng, 32768, 2, tb.stage_layout(32768, (8000, 30000)), True, grammar),
        "paired_64k_genome": tb.window_kind(
            rng, 65536, 2, tb.stage_layout(65536, (20000, 45000), "genome"), True, grammar),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per kind (after one warm-up step)")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    tb.keep_freed_memory()
    torch.set_flush_denormal(True)
    rng = np.random.default_rng(0)
    model = tb.build_model(tb.model_config(65536), seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    kinds = window_kinds(rng)
    results = []
    for name in args.kinds:
        seconds = []
        for step in range(args.steps + 1):
            started = time.perf_counter()
            loss = tb.step_loss(model, kinds[name], rng, paired_weight=2.0, taylor_weight=1.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step:
                seconds.append(time.perf_counter() - started)
        result = {"kind": name, "windows": kinds[name].batch, "length": kinds[name].length,
                  "median_seconds": round(statistics.median(seconds), 4), "seconds": [round(s, 4) for s in seconds]}
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.out:
        environment = {"machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs", "torch": torch.__version__,
                       "python": platform.python_version(), "commit": git_commit(), "threads": args.threads}
        record = {"benchmark": "training_steps", "environment": environment, "results": results}
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
