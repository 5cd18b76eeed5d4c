"""Where each engine's time goes (issues #20, #31): torch.profiler over a model, raw JSON.

For each engine (forward, gradient, tangent16, autograd) at one length with one kernels
backend: the wall time of an unprofiled call (after a warm-up call), then one profiled call,
reported as
  phases  the adjoint's own labels (pgf::forward_pass, pgf::backward, and pgf::recompute where a
          tile is recomputed under autograd: the reference kernels; record_function in
          pgf.engine.adjoint), CPU total seconds each;
  ops     the operators with the most self CPU time (name, self seconds, calls, share);
  families  self CPU seconds and shares per op family (`FAMILIES`: projections, conv, scan, norms,
          elementwise, copies and glue — everything else);
and every engine's wall time as a multiple of the forward's. The profiler adds overhead, so
phase and op seconds are read as shares of their own profiled total, not next to wall times.

    python -m bench.profile_engines [--model builtin|caduceus-ps|plantcad2-small] [--caduceus-config small|large]
                                    [--length 131072] [--kernels cpu] [--top 12] [--out FILE]

Writes bench/results/cpu-2core-profile.json for the built-in model, and
bench/results/cpu-2core-profile-<model>[-<config>]-<length>.json for the others (and --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bench.results_io import git_commit
from bench.throughput import build_model, run_engine

RESULTS = Path(__file__).resolve().parent / "results" / "cpu-2core-profile.json"
ENGINES = ("forward", "gradient", "tangent16", "autograd")
# op family -> substrings of profiler keys (first match wins, in this order)
FAMILIES = {
    "scan": ("pgf_kernels::scan", "ScanFunction", "selective_scan", "pgf_kernels::ssd", "ssd_scan"),
    "conv": ("pgf_kernels::conv", "causal_conv", "ConvFunction"),
    "projections": ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul"),
    "norms": ("rms_norm", "aten::rsqrt", "aten::pow", "aten::mean"),
    "elementwise": ("aten::mul", "aten::add", "aten::sub", "aten::exp", "aten::softplus", "aten::silu", "aten::sigmoid",
                    "aten::div", "aten::neg", "aten::where", "aten::log"),
    "copies": ("aten::copy_", "aten::cat", "aten::clone", "aten::contiguous", "aten::flip", "aten::to", "aten::_to_copy",
               "aten::zeros", "aten::empty", "aten::fill_", "aten::index"),
}


def family(key: str) -> str:
    for name, needles in FAMILIES.items():
        if any(needle in key for needle in needles):
            return name
    return "glue"
PHASES = ("pgf::forward_pass", "pgf::recompute", "pgf::backward")


def profile_engine(model, engine: str, length: int, top: int, backend: str | None = None, name: str = "builtin") -> dict:
    """The profile of one engine call over `length` positions, its mixers running the `backend`
    kernels (None: auto)."""
    run_engine(name, engine, model, min(length, 4096), backend=backend)  # warm-up: kernels loaded, allocator primed
    began = time.perf_counter()
    run_engine(name, engine, model, length, backend=backend)
    wall = time.perf_counter() - began
    with profile(activities=[ProfilerActivity.CPU]) as trace:
        run_engine(name, engine, model, length, backend=backend)
    events = trace.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    phases = {e.key: round(e.cpu_time_total / 1e6, 4) for e in events if e.key in PHASES}
    ops = sorted((e for e in events if e.key not in PHASES), key=lambda e: e.self_cpu_time_total, reverse=True)
    families: dict[str, float] = {}
    for e in ops:
        families[family(e.key)] = families.get(family(e.key), 0.0) + e.self_cpu_time_total / 1e6
    return {
        "engine": engine,
        "wall_seconds": round(wall, 4),
        "profiled_self_seconds": round(total, 4),
        "phases_cpu_seconds": phases,
        "families": {k: {"self_seconds": round(v, 4), "share": round(v / total, 4)}
                     for k, v in sorted(families.items(), key=lambda kv: -kv[1])},
        "ops": [
            {"name": e.key, "self_seconds": round(e.self_cpu_time_total / 1e6, 4), "calls": e.count,
             "share": round(e.self_cpu_time_total / 1e6 / total, 4)}
            for e in ops[:top]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin", choices=("builtin", "caduceus-ps", "plantcad2-small"))
    parser.add_argument("--caduceus-config", default="large", choices=("small", "large"))
    parser.add_argument("--length", type=int, default=131072)
    parser.add_argument("--kernels", default="cpu")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = build_model(args.model, args.caduceus_config)
    records = []
    for engine in args.engines.split(","):
        records.append(profile_engine(model, engine, args.length, args.top, backend=args.kernels, name=args.model))
        print(json.dumps({k: records[-1][k] for k in ("engine", "wall_seconds", "phases_cpu_seconds", "families")}),
              flush=True)
    forward = next((r["wall_seconds"] for r in records if r["engine"] == "forward"), None)
    for record in records:
        record["times_forward"] = round(record["wall_seconds"] / forward, 2) if forward else None
    result = {
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
                        "model": args.model, "length": args.length,
                        "caduceus_config": args.caduceus_config if args.model == "caduceus-ps" else None,
                        "kernels": args.kernels, "git_commit": git_commit(),
                        # other work on the machine slows every op alike: read shares, not seconds, when high
                        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]},
        "records": records,
    }
    text = json.dumps(result, indent=1)
    if not args.no_save:
        label = {"builtin": None, "caduceus-ps": f"caduceus-ps-{args.caduceus_config}"}.get(args.model, args.model)
        path = RESULTS if label is None else RESULTS.with_name(f"cpu-2core-profile-{label}-{args.length}.json")
        path.write_text(text + "\n")
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
