"""Throughput of every engine on this machine, reference vs compiled CPU kernels, side by side (issue #20).

One run measures, for each model x length x engine x kernels backend, the wall time of one
call, bp/s and the peak resident memory of a fresh child process (multiprocessing "spawn";
VmHWM from /proc/self/status read in the child after the case, `ru_maxrss` elsewhere; the child
first warms up on 512 bp so compile/cache loading is not timed but is in the peak), and
calibrates the machine in the same run:

  matmul  FLOP/s of a 2048 x 2048 x 2048 fp32 matmul (best of 5),
  copy    bytes/s of copying a 256 MiB fp32 tensor (read + write counted: 2 x 256 MiB; best of 5).

Engines (records' "engine"):
  forward    pgf forward sweep, no grad                 (get_engine("pgf").forward)
  gradient   pgf adjoint: d readout-sum / d onehot      (get_engine("pgf").gradient)
  tangent1   pgf tangent sweep, 1 direction             (get_engine("pgf").tangent)
  tangent16  pgf tangent sweep, 16 directions
  autograd   plain autograd over the whole sequence     (get_engine("autograd").gradient), only where the
             memory estimate below fits in half the machine's memory
  batch      pgf gradient of 100 x 2,048-bp regions in one batch
  paper      the paper's setup (bench/impulse_paper.py, "gentle" weights): one Mamba layer, d_model 128,
             E 256, N 16, an impulse tangent; "variant" paper-loop (its tile-64 log-space JVP, which
             never calls pgf's kernels: run once) and pgf (that layer's tiles through vmap(jvp) of
             MambaMixer.forward_tile, tile 2048, with each kernels backend)

Models: "builtin" (pgf.models.registry.load_model("builtin"): TrackSSM d_model 32, 3 bidirectional
layers, E 64, N 8, d_conv 8) and "caduceus-ps" (random CaduceusLM d_model 128, 4 layers, rcps, N 16,
weights livened as tests/helpers.py does).

How FLOPs and bytes per position are counted (`cost_per_position`): for every Mamba mixer call
(a bidirectional layer has 2; rcps doubles them again: each strand half is a full mixer) with
d_model D, inner width E, dt rank R, state N, conv width K:
  FLOPs  = 2 (D 2E  +  E (R + 2N)  +  R E  +  E D)      the four projections (multiply-add = 2)
         + 2 K E                                        depthwise conv
         + 6 E N                                        scan: decay*h + u*B, C.h (exp not counted: E N exps)
  bytes  = 4 x 2 x (D + 2E + E + (R + 2N) + E + E + D)  each fp32 activation written once and read once:
           layer input, in_proj out, conv out, x_proj out, delta, scan out, mixer out
plus the embedding/head (negligible, not counted). Per engine: forward = 1 x that, gradient = 3 x
(a forward and a backward that costs two), tangent with k directions = (1 + k) x (each direction
pushes through the same linear maps; the primal once), batch = gradient, autograd = gradient. The
"fraction" fields are (that work / the calibrated rate) / measured seconds, for FLOPs and for
bytes separately: how close the engine runs to each limit of this machine.

    python -m bench.throughput [--lengths 32768,131072] [--caduceus-lengths 32768]
                               [--kernels reference,cpu] [--case-timeout 300] [--out FILE]

Writes the raw JSON (one object: environment, calibration, records) to
bench/results/cpu-2core-throughput.json (and --out). Cases past --case-timeout are recorded as
timed out. Machine noise: every ratio should be read between records of the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "cpu-2core-throughput.json"
BATCH_REGIONS, BATCH_LENGTH = 100, 2048
WARMUP_LENGTH = 512


# ------------------------------------------------------------------------------------------------
# models and costs


def build_model(name: str):
    import torch

    if name == "builtin":
        from pgf.models.registry import load_model

        return load_model("builtin").model.eval().requires_grad_(False)
    if name == "caduceus-ps":
        from pgf.models.caduceus import CaduceusConfig, CaduceusLM

        torch.manual_seed(0)
        model = CaduceusLM(CaduceusConfig(d_model=128, n_layer=4, ssm_cfg={"d_state": 16}, rcps=True,
                                          complement_map={7: 10, 8: 9, 9: 8, 10: 7}))
        with torch.no_grad():  # as tests/helpers.py liven(): scans with real memory
            for pname, parameter in model.named_parameters():
                if pname.endswith("dt_proj.bias"):
                    parameter.add_(1.5)
                if pname.endswith("conv1d.weight"):
                    parameter.mul_(2.0)
        return model.eval().requires_grad_(False)
    raise ValueError(name)


def mixers(model):
    from pgf.models.mamba import MambaMixer

    return [m for m in model.modules() if isinstance(m, MambaMixer)]


def mixer_calls_per_layer(name: str) -> int:
    """Mixer calls per distinct MambaMixer module per position: rcps runs each twice (two strands)."""
    return 2 if name == "caduceus-ps" else 1


def cost_per_position(name: str, model) -> dict:
    """Forward FLOPs and bytes per position (see the module docstring)."""
    flops = bytes_ = 0
    for m in mixers(model):
        D, E, R, N, K = m.in_proj.in_features, m.d_inner, m.dt_rank, m.d_state, m.conv1d.kernel_size[0]
        calls = mixer_calls_per_layer(name)
        flops += calls * (2 * (D * 2 * E + E * (R + 2 * N) + R * E + E * D) + 2 * K * E + 6 * E * N)
        bytes_ += calls * 4 * 2 * (D + 2 * E + E + (R + 2 * N) + E + E + D)
    return {"flops": flops, "bytes": bytes_}


ENGINE_WORK = {"forward": 1, "gradient": 3, "autograd": 3, "batch": 3, "tangent1": 2, "tangent16": 17}


def autograd_bytes_estimate(name: str, model, length: int, backend: str) -> int:
    """Peak bytes plain autograd keeps for the whole sequence: every mixer's saved activations
    (~12 L x E fp32 tensors) plus, with the reference scan, its materialised (L, E, N) states
    (~12 of them per scan: decays, drives, local states, cumulative decays, ...)."""
    total = 0
    for m in mixers(model):
        E, N = m.d_inner, m.d_state
        per = 12 * E + (12 * E * N if backend == "reference" else 0)
        total += mixer_calls_per_layer(name) * per * 4 * length
    return total


def machine_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# ------------------------------------------------------------------------------------------------
# cases (each runs in a fresh child process)


def readout(outputs, onehot, offset):
    """The first head summed over its channels: (b, T)."""
    out = next(iter(outputs.values())) if isinstance(outputs, dict) else outputs
    return out.sum(-1) if out.dim() == 3 else out


def random_onehot(batch: int, length: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(0, 4, (batch, length), generator=g), 4).float()


def run_engine(name: str, engine: str, model, length: int):
    import torch

    from pgf.engine.registry import get_engine

    if engine == "batch":
        onehot = random_onehot(BATCH_REGIONS, BATCH_LENGTH)
    else:
        onehot = random_onehot(1, length)
    if engine == "forward":
        with torch.no_grad():
            return get_engine("pgf").forward(model, onehot, readout)
    if engine in ("gradient", "batch"):
        return get_engine("pgf").gradient(model, onehot, readout)
    if engine == "autograd":
        return get_engine("autograd").gradient(model, onehot, readout)
    if engine.startswith("tangent"):
        k = int(engine[len("tangent"):])
        g = torch.Generator().manual_seed(1)
        directions = torch.randn(k, 1, length, 4, generator=g)
        with torch.no_grad():
            return get_engine("pgf").tangent(model, onehot, directions, readout)
    raise ValueError(engine)


def run_paper(variant: str, length: int, tile: int = 2048):
    import torch
    from torch.func import jvp, vmap

    from bench.impulse_paper import D_MODEL, build_layer
    from bench.impulse_paper import run_paper as paper_loop

    mixer = build_layer("gentle")
    g = torch.Generator().manual_seed(1)
    u = torch.randn(1, length, D_MODEL, generator=g)
    u_dot = torch.zeros_like(u)
    u_dot[0, int(0.8 * length), 0] = 1.0
    with torch.no_grad():
        if variant == "paper-loop":
            return paper_loop(mixer, u, u_dot)
        state = tuple(mixer.zero_state(1, u))
        state_dot = tuple(torch.zeros(1, *s.shape) for s in state)
        outs = []
        for s in range(0, length, tile):
            e = min(s + tile, length)
            (_, state), (y_dot, state_dot) = vmap(
                lambda ud, *sd: jvp(lambda ut, *st: mixer.forward_tile(ut, tuple(st)), (u[:, s:e], *state), (ud, *sd)),
                out_dims=(None, 0),
            )(u_dot[None, :, s:e], *state_dot)
            outs.append(y_dot)
        return torch.cat(outs, dim=2)


def child(spec: dict) -> dict:
    import torch

    from pgf_kernels import kernel_backend

    torch.manual_seed(0)
    record = dict(spec)
    with kernel_backend(spec["kernels"] if spec["kernels"] != "none" else "auto"):
        if spec["engine"] == "paper":
            run_paper(spec["variant"], WARMUP_LENGTH)
            began = time.perf_counter()
            run_paper(spec["variant"], spec["length"])
        else:
            model = build_model(spec["model"])
            if spec["engine"] == "batch":
                run_engine(spec["model"], "gradient", model, WARMUP_LENGTH)
            else:
                run_engine(spec["model"], spec["engine"], model, WARMUP_LENGTH)
            began = time.perf_counter()
            run_engine(spec["model"], spec["engine"], model, spec["length"])
    seconds = time.perf_counter() - began
    bp = BATCH_REGIONS * BATCH_LENGTH if spec["engine"] == "batch" else spec["length"]
    record.update(seconds=round(seconds, 4), bp=bp, bp_per_s=round(bp / seconds, 1),
                  peak_bytes=peak_rss())
    return record


def peak_rss() -> int:
    """This process's peak resident memory: VmHWM (reset at exec; ru_maxrss is not, so a spawned
    child would report its parent's peak), ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child_entry(spec, queue):
    try:
        queue.put(child(spec))
    except BaseException as error:  # reported, not raised: the run goes on
        queue.put({**spec, "failed": f"{type(error).__name__}: {error}"[:500]})


def run_case(spec: dict, timeout: float) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child_entry, args=(spec, queue))
    process.start()
    try:
        result = queue.get(timeout=timeout)
    except Exception:
        process.kill()
        result = {**spec, "timed_out_after_s": timeout}
    process.join(timeout=30)
    return result


# ------------------------------------------------------------------------------------------------
# calibration


def calibrate() -> dict:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = math.inf
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    flops = 2 * 2048**3 / best
    src = torch.randn(64 * 2**20)  # 256 MiB
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = math.inf
    for _ in range(5):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return {"matmul_flop_per_s": round(flops), "copy_bytes_per_s": round(2 * src.numel() * 4 / best),
            "how": "2048^3 fp32 matmul, best of 5; 256 MiB fp32 copy_ counting read+write, best of 5"}


# ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="32768,131072", help="builtin-model lengths (bp)")
    parser.add_argument("--caduceus-lengths", default="32768", help="caduceus-ps lengths (bp); empty: skip")
    parser.add_argument("--paper-lengths", default="32768", help="paper-setup lengths; empty: skip")
    parser.add_argument("--kernels", default="reference,cpu")
    parser.add_argument("--engines", default="forward,gradient,tangent1,tangent16,autograd,batch")
    parser.add_argument("--case-timeout", type=float, default=300.0)
    parser.add_argument("--out")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args()

    import torch

    import pgf

    began = time.perf_counter()
    kernels = args.kernels.split(",")
    engines = args.engines.split(",")
    lengths = {"builtin": [int(v) for v in args.lengths.split(",") if v],
               "caduceus-ps": [int(v) for v in args.caduceus_lengths.split(",") if v]}
    environment = {"pgf": pgf.__version__, "torch": torch.__version__, "python": platform.python_version(),
                   "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                   "machine_memory_bytes": machine_memory(), "platform": platform.platform(),
                   "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    try:
        import numba

        environment["numba"] = numba.__version__
    except ImportError:
        pass
    calibration = calibrate()
    print(json.dumps(calibration), flush=True)
    records = []

    def add(record, cost=None, work=None):
        if cost and "seconds" in record:
            scale = work * record["bp"]
            record["flops_per_bp"] = cost["flops"] * work
            record["bytes_per_bp"] = cost["bytes"] * work
            record["flop_fraction"] = round(scale * cost["flops"] / calibration["matmul_flop_per_s"] / record["seconds"], 4)
            record["bandwidth_fraction"] = round(scale * cost["bytes"] / calibration["copy_bytes_per_s"] / record["seconds"], 4)
        records.append(record)
        print(json.dumps(record), flush=True)

    for name in ("builtin", "caduceus-ps"):
        if not lengths[name]:
            continue
        model = build_model(name)
        cost = cost_per_position(name, model)
        for length in lengths[name]:
            for engine in engines:
                if engine == "batch" and length != lengths[name][0]:
                    continue  # length-independent: once per model
                for backend in kernels:
                    spec = {"model": name, "length": BATCH_LENGTH if engine == "batch" else length,
                            "engine": engine, "kernels": backend}
                    if engine == "autograd":
                        need = autograd_bytes_estimate(name, model, length, backend)
                        if need > machine_memory() // 2:
                            add({**spec, "skipped": f"autograd estimate {need / 2**30:.1f} GiB > half the machine's memory"})
                            continue
                    add(run_case(spec, args.case_timeout), cost, ENGINE_WORK[engine])
    for length in [int(v) for v in args.paper_lengths.split(",") if v]:
        add(run_case({"model": "paper-layer", "length": length, "engine": "paper", "variant": "paper-loop",
                      "kernels": "none"}, args.case_timeout))
        for backend in kernels:
            add(run_case({"model": "paper-layer", "length": length, "engine": "paper", "variant": "pgf",
                          "kernels": backend}, args.case_timeout))

    # side by side: each case's speedup of the last kernels backend over the first
    if len(kernels) > 1:
        index = {(r["model"], r["length"], r["engine"], r.get("variant"), r["kernels"]): r for r in records}
        for r in records:
            if r["kernels"] == kernels[-1] and "seconds" in r:
                base = index.get((r["model"], r["length"], r["engine"], r.get("variant"), kernels[0]))
                if base and "seconds" in base:
                    r[f"speedup_over_{kernels[0]}"] = round(base["seconds"] / r["seconds"], 2)
    result = {"environment": environment, "calibration": calibration, "records": records,
              "total_seconds": round(time.perf_counter() - began, 1)}
    text = json.dumps(result, indent=1)
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text + "\n")
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(f"total {result['total_seconds']} s", flush=True)


if __name__ == "__main__":
    main()
