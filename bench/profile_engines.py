"""Where each engine's time goes (issue #20): torch.profiler over the built-in model, raw JSON.

For each engine (forward, gradient, tangent16, autograd) at one length with one kernels
backend: the wall time of an unprofiled call (after a warm-up call), then one profiled call,
reported as
  phases  the adjoint's own labels (pgf::forward_pass, pgf::backward, and pgf::recompute where a
          tile is recomputed under autograd: the reference kernels; record_function in
          pgf.engine.adjoint), CPU total seconds each;
  ops     the operators with the most self CPU time (name, self seconds, calls, share);
and every engine's wall time as a multiple of the forward's. The profiler adds overhead, so
phase and op seconds are read as shares of their own profiled total, not next to wall times.

    python -m bench.profile_engines [--length 131072] [--kernels cpu] [--top 12] [--out FILE]

Writes bench/results/cpu-2core-profile.json (and --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bench.results_io import git_commit
from bench.throughput import build_model, run_engine

RESULTS = Path(__file__).resolve().parent / "results" / "cpu-2core-profile.json"
ENGINES = ("forward", "gradient", "tangent16", "autograd")
PHASES = ("pgf::forward_pass", "pgf::recompute", "pgf::backward")


def profile_engine(model, engine: str, length: int, top: int, backend: str | None = None) -> dict:
    """The profile of one engine call over `length` positions, its mixers running the `backend`
    kernels (None: auto)."""
    run_engine("builtin", engine, model, 4096, backend=backend)  # warm-up: compiled kernels loaded, allocator primed
    began = time.perf_counter()
    run_engine("builtin", engine, model, length, backend=backend)
    wall = time.perf_counter() - began
    with profile(activities=[ProfilerActivity.CPU]) as trace:
        run_engine("builtin", engine, model, length, backend=backend)
    events = trace.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    phases = {e.key: round(e.cpu_time_total / 1e6, 4) for e in events if e.key in PHASES}
    ops = sorted((e for e in events if e.key not in PHASES), key=lambda e: e.self_cpu_time_total, reverse=True)
    return {
        "engine": engine,
        "wall_seconds": round(wall, 4),
        "profiled_self_seconds": round(total, 4),
        "phases_cpu_seconds": phases,
        "ops": [
            {"name": e.key, "self_seconds": round(e.self_cpu_time_total / 1e6, 4), "calls": e.count,
             "share": round(e.self_cpu_time_total / 1e6 / total, 4)}
            for e in ops[:top]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=131072)
    parser.add_argument("--kernels", default="cpu")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = build_model("builtin")
    records = []
    for engine in args.engines.split(","):
        records.append(profile_engine(model, engine, args.length, args.top, backend=args.kernels))
        print(json.dumps({k: records[-1][k] for k in ("engine", "wall_seconds", "phases_cpu_seconds")}), flush=True)
    forward = next((r["wall_seconds"] for r in records if r["engine"] == "forward"), None)
    for record in records:
        record["times_forward"] = round(record["wall_seconds"] / forward, 2) if forward else None
    result = {
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
                        "model": "builtin", "length": args.length, "kernels": args.kernels, "git_commit": git_commit()},
        "records": records,
    }
    text = json.dumps(result, indent=1)
    if not args.no_save:
        RESULTS.write_text(text + "\n")
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
