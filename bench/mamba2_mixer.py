"""One Mamba-2 mixer's tile functions alone, side by side with the same mixer at another commit.

A PlantCAD2-Small-sized mixer (d_model 768, 24 heads of 64, state 128, 1 group; random weights,
frozen as the engines freeze them), one tile of `--tile` positions (default 2,048, the CPU tile),
fp32, batch 1, on the "cpu" kernels, after WARM_UP rounds of every call: best and median wall times of `forward_tile` (the forward
sweep's tile), `forward_tile_saving` (the adjoint's forward pass) and `tile_vjp` with in_proj's
output kept and slim (the adjoint's reverse pass), and per-mixer gradient / forward
= (saving + vjp) / forward. Whole-model timings on this 2-core machine drift by 10% between runs;
this isolates a change to the mixer or its kernels. With `--compare-with REV` the package trees
of that commit (`git archive`: pgf_cli/ and kernels/) run in child processes interleaved round by
round with the working tree's, each child recording which files it imported:

    python -m bench.mamba2_mixer --compare-with 8722a6e

One JSON line per (tree, round) on stdout; all of them, with the environment, in a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time

from bench.results_io import ROOT, git_commit, write_results

WARM_UP = 3
SHAPE = {"d_model": 768, "d_state": 128, "expand": 2, "headdim": 64, "ngroups": 1}


def measure(tile: int, repeats: int) -> dict:
    """Best and median seconds of each tile function of one mixer (the imported `pgf`'s)."""
    import pgf
    import torch

    from pgf.models.mamba2 import Mamba2Mixer

    torch.manual_seed(0)
    mixer = Mamba2Mixer(SHAPE["d_model"], d_state=SHAPE["d_state"], expand=SHAPE["expand"],
                        headdim=SHAPE["headdim"], ngroups=SHAPE["ngroups"])
    with torch.no_grad():
        mixer.dt_bias.add_(1.5)  # as bench.mamba2_model: the scans carry state
    mixer.requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(1, tile, SHAPE["d_model"], generator=g)
    out_bar = torch.randn(1, tile, SHAPE["d_model"], generator=g)
    state = mixer.zero_state(1, u)
    _, after, residual = mixer.forward_tile_saving(u, state, "cpu")
    state_bar = type(after)(*(torch.randn(t.shape, generator=g, dtype=t.dtype) for t in after))
    calls = {
        "forward": lambda: mixer.forward_tile(u, state, "cpu"),
        "saving": lambda: mixer.forward_tile_saving(u, state, "cpu"),
        "vjp_kept": lambda: mixer.tile_vjp(u, state, residual, out_bar, state_bar, "cpu"),
        "vjp_slim": lambda: mixer.tile_vjp(u, state, residual.slim(), out_bar, state_bar, "cpu"),
    }
    for _ in range(WARM_UP):  # every call, round-robin: the allocator and caches settle (one call each is not enough)
        for call in calls.values():
            call()
    seconds = {}
    for name, call in calls.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        times.sort()
        seconds[name] = {"best": round(times[0], 6), "median": round(times[len(times) // 2], 6)}
    best = {k: v["best"] for k, v in seconds.items()}
    return {"pgf": os.path.dirname(pgf.__file__), "seconds": seconds,
            "gradient_over_forward": round((best["saving"] + best["vjp_kept"]) / best["forward"], 3)}


def tree_at(revision: str) -> str:
    """A temporary folder holding pgf_cli/ and kernels/ as they were at `revision`."""
    folder = tempfile.mkdtemp(prefix="pgf-tree-")
    archive = subprocess.run(["git", "archive", "--format=tar", revision, "pgf_cli", "kernels"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    archive_path = os.path.join(folder, "tree.tar")
    with open(archive_path, "wb") as handle:
        handle.write(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(folder, filter="data")
    return folder


def run_child(tile: int, repeats: int, tree: str | None) -> dict:
    """`measure` in a fresh process, importing pgf and pgf_kernels from `tree` (None: as installed)."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([os.path.join(tree, "pgf_cli"), os.path.join(tree, "kernels"),
                                             env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "bench.mamba2_mixer", "--child", "--tile", str(tile),
                           "--repeats", str(repeats)], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every tree")
    parser.add_argument("--compare-with", help="a git revision whose mixer runs beside the working tree's")
    parser.add_argument("--out", help="JSON file (default bench/results/cpu-2core-mamba2-mixer.json)")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.tile, args.repeats)))
        return 0

    trees = {"working tree": None}
    if args.compare_with:
        trees[args.compare_with] = tree_at(args.compare_with)
    records = []
    for round_number in range(args.rounds):
        for label, tree in trees.items():
            record = {"tree": label, "round": round_number, **run_child(args.tile, args.repeats, tree)}
            print(json.dumps(record), flush=True)
            records.append(record)
    import torch

    payload = {
        "environment": {
            "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "python": platform.python_version(), "git_commit": git_commit(),
            "command": " ".join(["python -m bench.mamba2_mixer", *(argv if argv is not None else sys.argv[1:])]),
            "tile": args.tile, "repeats": args.repeats, "mixer": SHAPE, "kernels": "cpu", "precision": "fp32",
        },
        "records": records,
    }
    if not args.no_save or args.out:
        write_results(payload, args.out, "cpu-2core", "mamba2-mixer", smoke=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
