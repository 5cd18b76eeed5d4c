"""A PlantCAD2-Small-shaped Mamba-2 model on CPU: forward and gradient, memory against plain autograd (issue #30).

The model: Caduceus-ps (RC-equivariant, bidirectional "add", tied projections) with Mamba-2 mixers,
24 layers, d_model 768, expand 2 (1,536 channels: 24 heads of 64), state 128, 1 group, the
PlantCaduceus vocabulary, random weights (seed 0; dt_bias raised so the scans carry state). Its
d_state and headdim are mamba_ssm's Mamba2 defaults: PlantCAD2's own are not confirmed.

Each case runs in a fresh child process (bench.throughput.run_case: a warm-up on 512 bp, then one
timed call, peak RSS of the case over the child's baseline). Engines: forward (pgf forward sweep),
gradient (pgf adjoint), autograd (plain autograd over the whole sequence; only at lengths where it
fits). Work per position per mixer call (multiply-add = 2): in_proj 2 D (2 E + 2 G N + H), conv
2 K (E + 2 G N), SSD chunked 2 T (G N + H P) + 6 H P N, out_proj 2 E D; 4 mixer calls per layer
(two directions x two strands). The flop fraction is that work (x 3 for a gradient) over the
calibrated fp32 matmul rate and the seconds; for a gradient the 3x is nominal (the tied
directions share in_proj's output and pull-back, so the engine does less), an equivalent rate.

    python -m bench.mamba2_model [--lengths 8192] [--engines forward,gradient] [--autograd-lengths 1024]
                                 [--pairs 1] [--case-timeout 1800] [--out FILE]

With `--pairs R` the engines at each of --lengths run R times in turn (forward, gradient, forward,
gradient, ...): each gradient's times_forward is over the forward just before it, and the summary
gives every pair's ratio and their median. On this machine a case's speed drifts by 10-20% over
minutes, so one pair's ratio is one sample of that drift, not the code's ratio.

Writes bench/results/cpu-2core-mamba2-model.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "cpu-2core-mamba2-model.json"
SHAPE = {"d_model": 768, "n_layer": 24, "expand": 2, "headdim": 64, "d_state": 128, "ngroups": 1, "d_conv": 4}
CHUNK = 64  # the SSD "cpu" backend's default chunk


def plantcad2_small_config():
    from pgf.models.caduceus_config import CaduceusConfig

    ssm = {k: SHAPE[k] for k in ("expand", "headdim", "d_state", "ngroups", "d_conv")}
    return CaduceusConfig(d_model=SHAPE["d_model"], n_layer=SHAPE["n_layer"], vocab_size=7, rcps=True,
                          complement_map={3: 6, 4: 5, 5: 4, 6: 3}, mixer_layer="Mamba2", ssm_cfg=ssm)


def build_plantcad2_small():
    import torch

    from pgf.models.caduceus import CaduceusLM

    torch.manual_seed(0)
    model = CaduceusLM(plantcad2_small_config())
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("dt_bias"):
                parameter.add_(1.5)
    return model


def flops_per_position() -> int:
    D, E, N, G, K = SHAPE["d_model"], SHAPE["expand"] * SHAPE["d_model"], SHAPE["d_state"], SHAPE["ngroups"], SHAPE["d_conv"]
    P = SHAPE["headdim"]
    H = E // P
    per_call = (2 * D * (2 * E + 2 * G * N + H) + 2 * K * (E + 2 * G * N)
                + 2 * CHUNK * (G * N + H * P) + 6 * H * P * N + 2 * E * D)
    return per_call * 4 * SHAPE["n_layer"]


def ratio_summary(records: list[dict]) -> dict:
    """Per length: every gradient's ratio to the forward run just before it, and their median."""
    import statistics

    by_length: dict[str, list[float]] = {}
    for record in records:
        if "times_forward" in record:
            by_length.setdefault(str(record["length"]), []).append(record["times_forward"])
    return {length: {"pairs": ratios, "median": round(statistics.median(ratios), 2)}
            for length, ratios in by_length.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="8192")
    parser.add_argument("--autograd-lengths", default="1024")
    parser.add_argument("--engines", default="forward,gradient", help="engines run at --lengths")
    parser.add_argument("--pairs", type=int, default=1, help="times the engines at --lengths run, in turn")
    parser.add_argument("--case-timeout", type=float, default=1800)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch

    import pgf
    from bench.results_io import git_commit
    from bench.throughput import calibrate, run_case

    began = time.perf_counter()
    commit = git_commit()  # at the start: each case imports pgf when its child process starts
    calibration = calibrate("cpu")
    work = flops_per_position()
    model = build_plantcad2_small()
    cases = [("autograd", int(v)) for v in args.autograd_lengths.split(",") if v]
    cases += [("gradient", int(v)) for v in args.autograd_lengths.split(",") if v]
    cases += [(engine, int(v)) for v in args.lengths.split(",") if v for _ in range(max(1, args.pairs))
              for engine in args.engines.split(",")]
    records = []
    for engine, length in cases:
        record = run_case({"model": "plantcad2-small", "length": length, "engine": engine, "kernels": "auto",
                           "device": "cpu"}, args.case_timeout)
        earlier = [r for r in records if r["length"] == length and r["engine"] == "forward" and "seconds" in r]
        if engine == "gradient" and earlier and "seconds" in record:
            record["times_forward"] = round(record["seconds"] / earlier[-1]["seconds"], 2)
        if "seconds" in record:
            scale = 1 if engine == "forward" else 3
            record["flop_fraction"] = round(scale * work * length / calibration["matmul_flop_per_s"] / record["seconds"], 4)
        records.append(record)
        print(json.dumps(record), flush=True)
    index = {(r["engine"], r["length"]): r for r in records if "seconds" in r}
    for (engine, length), record in index.items():
        if engine == "gradient" and ("autograd", length) in index:
            # whole-process peaks (model and warm-up included): autograd's baseline already holds its warm-up's cache
            record["peak_bytes_over_autograd"] = round(record["peak_bytes"] / index[("autograd", length)]["peak_bytes"], 4)
    payload = {
        "environment": {"pgf": pgf.__version__, "torch": torch.__version__, "python": platform.python_version(),
                        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                        "git_commit": commit, "precision": "fp32", "batch": 1, "kernels": "auto (ssd: cpu chunked)",
                        "model": {"name": "PlantCAD2-Small-shaped Caduceus-ps with Mamba-2 mixers, random weights",
                                  **SHAPE, "parameters": sum(p.numel() for p in model.parameters())},
                        "flops_per_position_forward": work, "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
                        "command": " ".join(["python -m bench.mamba2_model", *(argv if argv is not None else sys.argv[1:])])},
        "calibration": calibration,
        "records": records,
        "gradient_over_forward": ratio_summary(records),
        "total_seconds": round(time.perf_counter() - began, 1),
    }
    Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return payload


if __name__ == "__main__":
    main()
