"""Peak memory and time of per-base gradients: plain autograd, per-layer checkpointing, PGF adjoint.

Each measurement runs in its own child process (so peak RSS is its own) and
prints one JSON line; the parent prints them side by side with the ratios to
plain autograd at the same length, and how far each gradient is from the
autograd one where both ran. A measurement whose memory, extrapolated
from the method's largest completed length (its baseline plus bytes per
position), would pass --budget-gb is skipped (and printed as skipped).

    python -m bench.adjoint_memory                       # CPU, L = 16k, 65k, 131k, 1M
    python -m bench.adjoint_memory --device cuda --out bench/results/h100-adjoint.jsonl

Model: a causal 2-layer Mamba (d_model 64, d_inner 128, d_state 16), random
weights, fp32; target: the sum of its output track over the region.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

METHODS = ("autograd", "checkpoint", "pgf")


def build_model():
    import torch

    from pgf.models.track_ssm import TrackSSM, TrackSSMConfig

    torch.manual_seed(0)
    return TrackSSM(TrackSSMConfig(d_model=64, n_layer=2, d_state=16, expand=2, bidirectional=False)).eval()


def checkpointed_gradient(model, onehot, target):
    """Autograd with torch.utils.checkpoint around every layer (activations of one layer at a time)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    x = onehot.detach().clone().requires_grad_(True)
    stream = model.embed(x)
    for layer in model.tiled_layers():
        stream = checkpoint(layer.whole, stream, use_reentrant=False)
    f = target.contributions(model.head(stream), x, [0]).sum()
    (gradient,) = torch.autograd.grad(f, x)
    return gradient, float(f)


def child(method: str, length: int, tile: int, device: str, save: str | None) -> dict:
    import numpy as np
    import torch

    from pgf.engine import AutogradEngine, TiledEngine
    from pgf.models.targets import parse_target

    model = build_model().to(device)
    g = torch.Generator().manual_seed(1)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 4, (1, length), generator=g), 4).float().to(device)
    target = parse_target("sum", model)
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    if method == "autograd":
        result = AutogradEngine().gradient(model, onehot, target.readout([0]))
        gradient, value = result.gradient, float(result.target_value[0])
    elif method == "checkpoint":
        gradient, value = checkpointed_gradient(model, onehot, target)
    else:
        result = TiledEngine(tile=tile).gradient(model, onehot, target.readout([0]))
        gradient, value = result.gradient, float(result.target_value[0])
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    record = {
        "method": method,
        "length": length,
        "tile": tile if method == "pgf" else None,
        "seconds": round(seconds, 3),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "baseline_rss_bytes": baseline_rss,
        "target_value": value,
        "device": device,
    }
    if device == "cuda":
        record["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
        record["device_name"] = torch.cuda.get_device_name()
    if save:
        np.save(save, gradient.float().cpu().numpy()[0])
    return record


def environment(device: str) -> dict:
    import torch

    import pgf

    return {
        "pgf": pgf.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "model": "causal Mamba, 2 layers, d_model 64, d_inner 128, d_state 16, fp32, random weights",
        "target": "sum of the output track",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="16384,65536,131072,1048576")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--tile", type=int, default=2048)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--budget-gb", type=float, default=16.0, help="skip runs extrapolated beyond this peak")
    parser.add_argument("--out", help="also append the JSON lines to this file")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "LENGTH"), help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.tile, args.device, args.save)))
        return

    import numpy as np

    lines = [{"environment": environment(args.device)}]
    print(json.dumps(lines[0]), flush=True)
    per_position: dict[str, tuple[float, float]] = {}  # method -> (baseline bytes, bytes per position)
    workdir = tempfile.mkdtemp(prefix="pgf-bench-")
    for length in [int(x) for x in args.lengths.split(",")]:
        records = {}
        for method in args.methods.split(","):
            key = "peak_cuda_bytes" if args.device == "cuda" else "peak_rss_bytes"
            if method in per_position and sum(per_position[method][i] * (1, length)[i] for i in (0, 1)) > args.budget_gb * 2**30:
                record = {"method": method, "length": length, "skipped": f"extrapolated peak over {args.budget_gb} GB"}
            else:
                save = os.path.join(workdir, f"{method}-{length}.npy")
                command = [sys.executable, __file__, "--child", method, str(length), "--tile", str(args.tile),
                           "--device", args.device, "--save", save]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    record = {"method": method, "length": length, "failed": done.stderr.strip().splitlines()[-1:]}
                else:
                    record = json.loads(done.stdout.strip().splitlines()[-1])
                    baseline = record["baseline_rss_bytes"] if key == "peak_rss_bytes" else 0
                    per_position[method] = (baseline, (record[key] - baseline) / length)
                    records[method] = (record, save)
            if "autograd" in records and method != "autograd" and method in records:
                base, base_path = records["autograd"]
                record["peak_ratio_to_autograd"] = round(record[key] / base[key], 4)
                record["time_ratio_to_autograd"] = round(record["seconds"] / base["seconds"], 4)
                reference, got = np.load(base_path), np.load(records[method][1])
                record["max_rel_difference_to_autograd"] = float(np.abs(got - reference).max() / np.abs(reference).max())
            lines.append(record)
            print(json.dumps(record), flush=True)
    if args.out:
        with open(args.out, "a") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in lines)


if __name__ == "__main__":
    main()
