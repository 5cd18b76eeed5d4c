"""Per-base gradients of a Caduceus-ps-sized model with pgf's adjoint engine: peak GPU memory
and gradient time / forward time, at 131,072 and 1,048,576 bp.

Model: pgf.models.caduceus with d_model 256, 16 layers, rcps (two strands, width 512),
bidirectional BiMamba (weight-tied in/out projections), d_state 16, fp32, random weights
(the published caduceus-ps checkpoints have this shape). Target: the masked-LM
log-likelihood of the observed bases (`loglik`). Each (length, measurement) runs in its own
child process, so each peak (torch.cuda.max_memory_allocated) is its own:

  forward   the engine's forward sweep (`TiledEngine.forward`, same tiles, no gradients)
  gradient  TiledEngine.gradient: d loglik / d one-hot at every base

Targets (reported as met / not met): peak <= 2 GB at 131k, <= 8 GB at 1M, gradient time
<= 3 x forward time. One JSON line per measurement and one per length (the ratio); all of
them, with the environment, in a JSON file (default
bench/results/<device>-model-gradient-memory.json).

    python -m bench.model_gradient_memory                      # CUDA, Triton kernels, layer inputs offloaded to host
    python -m bench.model_gradient_memory --offload auto --kernels reference
    python -m bench.model_gradient_memory --smoke              # tiny model on CPU (reference kernels): checks the script
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

from bench.results_io import git_commit, write_results

CMAP = {7: 10, 8: 9, 9: 8, 10: 7}  # A<->T, C<->G in the Caduceus vocabulary
TARGETS_GB = {131072: 2.0, 1048576: 8.0}
TARGET_RATIO = 3.0


def build_model(d_model: int, n_layer: int):
    import torch

    from pgf.models.caduceus import CaduceusConfig, CaduceusLM

    torch.manual_seed(0)
    config = CaduceusConfig(d_model=d_model, n_layer=n_layer, ssm_cfg={"d_state": 16}, rcps=True, complement_map=CMAP)
    return CaduceusLM(config).eval()


def child(args) -> dict:
    """One measurement in this process: prints its JSON record."""
    import torch

    from pgf.engine import TiledEngine
    from pgf.models.targets import parse_target
    from pgf.workflows.effect import output_function
    device = torch.device(args.device)
    model = build_model(args.d_model, args.n_layer).to(device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    length = args.child_length
    g = torch.Generator().manual_seed(1)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 4, (1, length), generator=g), 4).float().to(device)
    record = {"measurement": args.child, "length": length, "tile": args.tile, "kernels": args.kernels, "device": args.device}
    offload = {"on": True, "off": False, "auto": None}[args.offload]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() if device.type == "cuda" else 0
        sync()
        began = time.perf_counter()
        if args.child == "forward":
            output, _, _ = output_function(model)
            values = TiledEngine(tile=args.tile, backend=args.kernels).forward(model, onehot, output)
            record["output_sum"] = float(values.double().sum())
        else:
            engine = TiledEngine(tile=args.tile, offload=offload, backend=args.kernels)
            result = engine.gradient(model, onehot, parse_target("loglik", model).readout([0]))
            record["target_value"] = float(result.target_value[0])
            record["gradient_finite"] = bool(torch.isfinite(result.gradient).all())
            record["offloaded"] = result.offloaded
        sync()
        record["seconds"] = time.perf_counter() - began
        if device.type == "cuda":
            record["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
            record["peak_cuda_bytes_above_model"] = torch.cuda.max_memory_allocated() - base
    except torch.cuda.OutOfMemoryError:
        record["oom"] = True
    return record


def environment(args) -> dict:
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({platform.processor() or platform.machine()})"
    return {
        "script": "bench/model_gradient_memory.py",
        "device_name": name,
        "torch": torch.__version__,
        "triton": triton_version,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "config": {"lengths": args.lengths, "d_model": args.d_model, "n_layer": args.n_layer, "rcps": True, "bidirectional": True,
                   "d_state": 16, "dtype": "fp32", "tile": args.tile, "kernels": args.kernels, "offload": args.offload,
                   "target": "loglik", "smoke": args.smoke},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="131072,1048576")
    parser.add_argument("--tile", type=int, default=2048)
    parser.add_argument("--d-model", dest="d_model", type=int, default=256)
    parser.add_argument("--n-layer", dest="n_layer", type=int, default=16)
    parser.add_argument("--kernels", default="auto", choices=("auto", "triton", "reference"))
    parser.add_argument("--offload", default="on", choices=("on", "off", "auto"),
                        help="keep layer inputs on host memory (on), never (off), or when large (auto)")
    parser.add_argument("--out", help="JSON file (default bench/results/<device>-model-gradient-memory.json; a temp file with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny model and lengths on CPU with the reference kernels")
    parser.add_argument("--device", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=("forward", "gradient"), help=argparse.SUPPRESS)
    parser.add_argument("--child-length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.lengths, args.d_model, args.n_layer, args.tile, args.kernels, args.offload = "256,1024", 16, 2, 128, "reference", "off"
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return

    import torch

    if not args.smoke and not torch.cuda.is_available():
        sys.exit("bench/model_gradient_memory.py measures GPU memory and needs CUDA (none found). "
                 "Run it on a GPU machine, or use --smoke for a tiny CPU check of the script.")
    args.device = "cpu" if args.smoke else "cuda"
    env = environment(args)
    print(json.dumps(env), flush=True)
    records = []
    for length in [int(v) for v in args.lengths.split(",")]:
        by_kind = {}
        for measurement in ("forward", "gradient"):
            command = [sys.executable, "-m", "bench.model_gradient_memory", "--child", measurement, "--child-length", str(length),
                       "--device", args.device, "--tile", str(args.tile), "--d-model", str(args.d_model),
                       "--n-layer", str(args.n_layer), "--kernels", args.kernels, "--offload", args.offload]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                record = {"measurement": measurement, "length": length, "failed": done.stderr.strip().splitlines()[-3:]}
            else:
                record = json.loads(done.stdout.strip().splitlines()[-1])
            by_kind[measurement] = record
            records.append(record)
            print(json.dumps(record), flush=True)
        forward, gradient = by_kind["forward"], by_kind["gradient"]
        summary = {"summary": True, "length": length}
        if "seconds" in forward and "seconds" in gradient:
            summary["gradient_over_forward_time"] = gradient["seconds"] / forward["seconds"]
            summary["ratio_target_met"] = summary["gradient_over_forward_time"] <= TARGET_RATIO
        if "peak_cuda_bytes" in gradient:
            summary["gradient_peak_gb"] = gradient["peak_cuda_bytes"] / 2**30
            if length in TARGETS_GB:
                summary["memory_target_gb"] = TARGETS_GB[length]
                summary["memory_target_met"] = summary["gradient_peak_gb"] <= TARGETS_GB[length]
        records.append(summary)
        print(json.dumps(summary), flush=True)
    write_results({"environment": env, "records": records}, args.out, env["device_name"], "model-gradient-memory", args.smoke)


if __name__ == "__main__":
    main()
