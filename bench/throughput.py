"""Throughput of every engine on this machine (CPU or one CUDA GPU), kernel backends side by side (issues #20, #21).

One run measures, for each model x length x engine x kernels backend, the wall time of one
call, bp/s and the peak memory of a fresh child process (multiprocessing "spawn"; the child
first warms up on 512 bp so compile/cache loading is not timed). Records' "peak_kind" says
which peak: "rss" on CPU (VmHWM from /proc/self/status read in the child after the case,
`ru_maxrss` elsewhere; on Linux VmHWM is restarted after the warm-up, and "baseline_bytes" (the
resident memory then: Python, torch, the model) and "case_bytes" (peak - baseline: what the case
itself needed) are recorded too), "cuda_allocated" with --device cuda
(torch.cuda.max_memory_allocated() after reset_peak_memory_stats() between the warm-up and
the case: the model's weights plus the case's own tensors; host memory not counted). On CUDA
the model and the inputs live on the GPU and the timed call is bracketed by
torch.cuda.synchronize(). Every record has "precision": the dtype that ran ("fp32": models,
inputs and scans are fp32 throughout). The run calibrates the machine it runs on:

  CPU   matmul  FLOP/s of a 2048 x 2048 x 2048 fp32 matmul (best of 5),
        copy    bytes/s of copying a 256 MiB fp32 tensor (read + write counted: 2 x 256 MiB; best of 5);
  CUDA  matmul  FLOP/s of an 8192 x 8192 x 8192 fp32 matmul (TF32 as torch's default, recorded; best of 5,
                synchronized),
        copy    bytes/s of a device-to-device copy_ of a 1 GiB fp32 tensor (read + write counted:
                2 x 1 GiB; best of 5, synchronized).

Engines (records' "engine"; each run with backend= the case's kernels, "none" meaning auto):
  forward    pgf forward sweep, no grad                 (get_engine("pgf").forward)
  gradient   pgf adjoint: d readout-sum / d onehot      (get_engine("pgf").gradient)
  tangent1   pgf tangent sweep, 1 direction             (get_engine("pgf").tangent)
  tangent16  pgf tangent sweep, 16 directions
  autograd   plain autograd over the whole sequence     (get_engine("autograd").gradient), only where the
             memory estimate below fits in half the machine's memory (half the GPU's memory with CUDA)
  batch      pgf gradient of 100 x 2,048-bp regions in one batch
  paper      the paper's setup (bench/impulse_paper.py, "gentle" weights): one Mamba layer, d_model 128,
             E 256, N 16, an impulse tangent; "variant" paper-loop (its tile-64 log-space JVP, which
             never calls pgf's kernels: run once) and pgf (that layer's tiles through vmap(jvp) of
             MambaMixer.forward_tile, tile 2048, with each kernels backend)

Models: "builtin" (pgf.models.registry.load_model("builtin"): TrackSSM d_model 32, 3 bidirectional
layers, E 64, N 8, d_conv 8) and "caduceus-ps" (random CaduceusLM, rcps, bidirectional, N 16,
weights livened as tests/helpers.py does), in one of two sizes (--caduceus-config; recorded in
the environment): "small" d_model 128, 4 layers (the CPU default) and "large" d_model 256,
16 layers (Caduceus-ps-sized, as bench/model_gradient_memory.py; the CUDA default).

How FLOPs and bytes per position are counted (`cost_per_position`): for every Mamba mixer call
(a bidirectional layer has 2; rcps doubles them again: each strand half is a full mixer) with
d_model D, inner width E, dt rank R, state N, conv width K:
  FLOPs  = 2 (D 2E  +  E (R + 2N)  +  R E  +  E D)      the four projections (multiply-add = 2)
         + 2 K E                                        depthwise conv
         + 6 E N                                        scan: decay*h + u*B, C.h (exp not counted: E N exps)
  bytes  = 4 x 2 x (D + 2E + E + (R + 2N) + E + E + D)  each fp32 activation written once and read once:
           layer input, in_proj out, conv out, x_proj out, delta, scan out, mixer out
plus the embedding/head (negligible, not counted). The same count on CPU and CUDA (the bytes are
those a fused implementation must move at least; the reference scan's materialised (L, E, N)
states are not counted). Per engine: forward = 1 x that, gradient = 3 x
(a forward and a backward that costs two), tangent with k directions = (1 + k) x (each direction
pushes through the same linear maps; the primal once), batch = gradient, autograd = gradient. The
"fraction" fields are (that work / the calibrated rate) / measured seconds, for FLOPs and for
bytes separately: how close the engine runs to each limit of this machine.

    python -m bench.throughput [--lengths 32768,131072] [--caduceus-lengths 32768]
                               [--kernels reference,cpu] [--case-timeout 300] [--out FILE]
    python -m bench.throughput --device cuda [--caduceus-config large] [--long] [--budget SECONDS]

Defaults by device: CPU lengths 32768,131072 (builtin), 32768 (caduceus-ps, small), paper 32768,
kernels reference,cpu; CUDA lengths 131072 for both models (caduceus-ps large; --long adds a
1,048,576-bp caduceus-ps gradient), no paper cases, kernels reference,triton. With CUDA the
caduceus-ps cases run first. --budget stops starting cases once that many seconds have passed
(the rest are recorded as skipped) and cuts the case in flight at the budget.

Writes the raw JSON (one object: environment, calibration, records, total_seconds) to
bench/results/cpu-2core-throughput.json on CPU, bench/results/<device-slug>-throughput.json on
CUDA (e.g. nvidia-h200-throughput.json), and to --out; --out is rewritten after every record, so
a run cut short leaves its records there (without "total_seconds"). Cases past --case-timeout are
recorded as timed out. Machine noise: every ratio should be read between records of the same run.
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
LONG_LENGTH = 1048576
PRECISION = "fp32"  # what runs: fp32 models, inputs and scans (no precision option yet)
CADUCEUS_CONFIGS = {"small": {"d_model": 128, "n_layer": 4}, "large": {"d_model": 256, "n_layer": 16}}
DEVICE_DEFAULTS = {  # option: (cpu, cuda)
    "lengths": ("32768,131072", "131072"),
    "caduceus_lengths": ("32768", "131072"),
    "paper_lengths": ("32768", ""),
    "kernels": ("reference,cpu", "reference,triton"),
    "caduceus_config": ("small", "large"),
}


def results_path(device: str, device_name: str) -> Path:
    """The default output file: cpu-2core-throughput.json on CPU, <device-slug>-throughput.json on CUDA."""
    if device == "cpu":
        return RESULTS
    from bench.results_io import slug

    return RESULTS.parent / f"{slug(device_name)}-throughput.json"


# ------------------------------------------------------------------------------------------------
# models and costs


def build_model(name: str, caduceus_config: str = "small"):
    import torch

    if name == "builtin":
        from pgf.models.registry import load_model

        return load_model("builtin").model.eval().requires_grad_(False)
    if name == "caduceus-ps":
        from pgf.models.caduceus import CaduceusConfig, CaduceusLM

        torch.manual_seed(0)
        size = CADUCEUS_CONFIGS[caduceus_config]
        model = CaduceusLM(CaduceusConfig(d_model=size["d_model"], n_layer=size["n_layer"], ssm_cfg={"d_state": 16},
                                          rcps=True, bidirectional=True, complement_map={7: 10, 8: 9, 9: 8, 10: 7}))
        with torch.no_grad():  # as tests/helpers.py liven(): scans with real memory
            for pname, parameter in model.named_parameters():
                if pname.endswith("dt_proj.bias"):
                    parameter.add_(1.5)
                if pname.endswith("conv1d.weight"):
                    parameter.mul_(2.0)
        return model.eval().requires_grad_(False)
    if name == "plantcad2-small":
        from bench.mamba2_model import build_plantcad2_small

        return build_plantcad2_small().eval().requires_grad_(False)
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


def device_memory(device: str) -> int:
    """The memory the autograd estimate is compared with: the machine's, or the GPU's."""
    if device == "cuda":
        import torch

        return torch.cuda.get_device_properties(0).total_memory
    return machine_memory()


# ------------------------------------------------------------------------------------------------
# cases (each runs in a fresh child process)


def sum_first_head(outputs, onehot, offset):
    """The first head summed over its channels: (b, T); every row alike (a `PositionReadout`)."""
    out = next(iter(outputs.values())) if isinstance(outputs, dict) else outputs
    return out.sum(-1) if out.dim() == 3 else out


def _readout():
    from pgf.engine import PositionReadout

    return PositionReadout(sum_first_head)


def random_onehot(batch: int, length: int, seed: int = 0, device: str = "cpu"):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(0, 4, (batch, length), generator=g), 4).float().to(device)


def run_engine(name: str, engine: str, model, length: int, device: str = "cpu", backend: str | None = None):
    """One call of `engine` on `model` over `length` positions, its mixers running the `backend`
    kernels (None: auto)."""
    import torch

    from pgf.engine.registry import get_engine

    readout = _readout()
    if engine == "batch":
        onehot = random_onehot(BATCH_REGIONS, BATCH_LENGTH, device=device)
    else:
        onehot = random_onehot(1, length, device=device)
    if engine == "forward":
        with torch.no_grad():
            return get_engine("pgf", backend=backend).forward(model, onehot, readout)
    if engine in ("gradient", "batch"):
        return get_engine("pgf", backend=backend).gradient(model, onehot, readout)
    if engine == "autograd":
        return get_engine("autograd", backend=backend).gradient(model, onehot, readout)
    if engine.startswith("tangent"):
        k = int(engine[len("tangent"):])
        g = torch.Generator().manual_seed(1)
        directions = torch.randn(k, 1, length, 4, generator=g).to(device)
        with torch.no_grad():
            return get_engine("pgf", backend=backend).tangent(model, onehot, directions, readout)
    raise ValueError(engine)


def run_paper(variant: str, length: int, tile: int = 2048, device: str = "cpu", backend: str | None = None):
    """The paper layer's impulse response: the paper's loop, or pgf's tiles on the `backend` kernels
    (None: auto)."""
    import torch
    from torch.func import jvp, vmap

    from bench.impulse_paper import D_MODEL, build_layer
    from bench.impulse_paper import run_paper as paper_loop

    mixer = build_layer("gentle").to(device)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(1, length, D_MODEL, generator=g).to(device)
    u_dot = torch.zeros_like(u)
    u_dot[0, int(0.8 * length), 0] = 1.0
    with torch.no_grad():
        if variant == "paper-loop":
            return paper_loop(mixer, u, u_dot)
        state = tuple(mixer.zero_state(1, u))
        state_dot = tuple(torch.zeros(1, *s.shape, device=s.device) for s in state)
        outs = []
        for s in range(0, length, tile):
            e = min(s + tile, length)
            (_, state), (y_dot, state_dot) = vmap(
                lambda ud, *sd: jvp(lambda ut, *st: mixer.forward_tile(ut, tuple(st), backend), (u[:, s:e], *state), (ud, *sd)),
                out_dims=(None, 0),
            )(u_dot[None, :, s:e], *state_dot)
            outs.append(y_dot)
        return torch.cat(outs, dim=2)


def child(spec: dict) -> dict:
    import torch

    spec = dict(spec)
    device = spec.pop("device", "cpu")
    caduceus_config = spec.pop("caduceus_config", "small")
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.manual_seed(0)
    record = dict(spec)
    backend = spec["kernels"] if spec["kernels"] != "none" else "auto"  # "none": a case that runs no pgf kernels
    if spec["engine"] == "paper":
        run_paper(spec["variant"], WARMUP_LENGTH, device=device, backend=backend)
        case = lambda: run_paper(spec["variant"], spec["length"], device=device, backend=backend)  # noqa: E731
    else:
        model = build_model(spec["model"], caduceus_config).to(device)
        warmup = "gradient" if spec["engine"] == "batch" else spec["engine"]
        run_engine(spec["model"], warmup, model, WARMUP_LENGTH, device, backend)
        case = lambda: run_engine(spec["model"], spec["engine"], model, spec["length"], device, backend)  # noqa: E731
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    baseline = None if cuda else reset_peak_rss()
    began = time.perf_counter()
    result = case()
    sync()
    seconds = time.perf_counter() - began
    if getattr(result, "recomputed_layers", 0):  # the adjoint ran some layers twice to fit memory (keep_plan)
        record["recomputed_layers"] = result.recomputed_layers
    bp = BATCH_REGIONS * BATCH_LENGTH if spec["engine"] == "batch" else spec["length"]
    record.update(seconds=round(seconds, 4), bp=bp, bp_per_s=round(bp / seconds, 1),
                  peak_bytes=torch.cuda.max_memory_allocated() if cuda else peak_rss(),
                  peak_kind="cuda_allocated" if cuda else "rss")
    if baseline is not None:  # the case's own memory: its peak over what the process held before it
        record.update(baseline_bytes=baseline, case_bytes=record["peak_bytes"] - baseline)
    return record


def _proc_status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> int | None:
    """Start VmHWM again from the current resident memory (Linux: clear_refs 5) and return that
    baseline, so the peak after the case is the case's; None where that cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return None
    return _proc_status_bytes("VmRSS")


def peak_rss() -> int:
    """This process's peak resident memory: VmHWM (reset at exec; ru_maxrss is not, so a spawned
    child would report its parent's peak), ru_maxrss where /proc is missing."""
    peak = _proc_status_bytes("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def public(spec: dict) -> dict:
    """The spec as recorded: device and model size are in the environment, not in each record."""
    return {k: v for k, v in spec.items() if k not in ("device", "caduceus_config")}


def _child_entry(spec, queue):
    try:
        queue.put(child(spec))
    except BaseException as error:  # reported, not raised: the run goes on
        queue.put({**public(spec), "failed": f"{type(error).__name__}: {error}"[:500]})


def run_case(spec: dict, timeout: float) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child_entry, args=(spec, queue))
    process.start()
    try:
        result = queue.get(timeout=timeout)
    except Exception:
        process.kill()
        result = {**public(spec), "timed_out_after_s": round(timeout, 1)}
    process.join(timeout=30)
    return result


# ------------------------------------------------------------------------------------------------
# calibration


def calibrate(device: str = "cpu") -> dict:
    if device == "cuda":
        return calibrate_cuda()
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


def calibrate_cuda() -> dict:
    """The GPU's fp32 matmul FLOP/s and device-to-device copy bytes/s, synchronized, best of 5."""
    import torch

    def best_of(fn, repeats=5):
        fn()
        torch.cuda.synchronize()
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        return best

    n = 8192
    a, b = torch.randn(n, n, device="cuda"), torch.randn(n, n, device="cuda")
    flops = 2 * n**3 / best_of(lambda: a @ b)
    del a, b
    src = torch.randn(256 * 2**20, device="cuda")  # 1 GiB
    dst = torch.empty_like(src)
    copy_bytes = 2 * src.numel() * 4 / best_of(lambda: dst.copy_(src))
    del src, dst
    torch.cuda.empty_cache()
    tf32 = torch.backends.cuda.matmul.allow_tf32
    return {"matmul_flop_per_s": round(flops), "copy_bytes_per_s": round(copy_bytes),
            "how": f"{n}^3 fp32 matmul on the GPU (allow_tf32={tf32}), best of 5; 1 GiB fp32 device-to-device "
                   "copy_ counting read+write, best of 5; torch.cuda.synchronize() around each"}


# ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where models, inputs and calibration run (cuda: one GPU, fp32)")
    parser.add_argument("--lengths", help="builtin-model lengths (bp); empty: skip (default 32768,131072; cuda 131072)")
    parser.add_argument("--caduceus-lengths", help="caduceus-ps lengths (bp); empty: skip (default 32768; cuda 131072)")
    parser.add_argument("--caduceus-config", choices=tuple(CADUCEUS_CONFIGS),
                        help="small: d_model 128, 4 layers (cpu default); large: d_model 256, 16 layers (cuda default)")
    parser.add_argument("--long", action="store_true", help=f"add a {LONG_LENGTH:,}-bp caduceus-ps gradient (meant for a GPU)")
    parser.add_argument("--paper-lengths", help="paper-setup lengths; empty: skip (default 32768; cuda none)")
    parser.add_argument("--kernels", help="kernel backends, first = baseline (default reference,cpu; cuda reference,triton)")
    parser.add_argument("--engines", default="forward,gradient,tangent1,tangent16,autograd,batch")
    parser.add_argument("--case-timeout", type=float, default=300.0)
    parser.add_argument("--budget", type=float, help="seconds for the whole run: later cases are skipped, the case in flight cut")
    parser.add_argument("--out", help="also write the JSON here (rewritten after every record)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args()
    column = 1 if args.device == "cuda" else 0
    for option, values in DEVICE_DEFAULTS.items():
        if getattr(args, option) is None:
            setattr(args, option, values[column])

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench.throughput: error: --device cuda needs a CUDA GPU, and torch.cuda.is_available() is False "
              f"here (torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu", file=sys.stderr)
        sys.exit(2)

    import pgf
    from bench.results_io import git_commit

    began = time.perf_counter()
    kernels = args.kernels.split(",")
    engines = args.engines.split(",")
    lengths = {"builtin": [int(v) for v in args.lengths.split(",") if v],
               "caduceus-ps": [int(v) for v in args.caduceus_lengths.split(",") if v]}
    device_name = (torch.cuda.get_device_name() if args.device == "cuda"
                   else f"cpu ({platform.processor() or platform.machine()})")
    environment = {"pgf": pgf.__version__, "torch": torch.__version__, "python": platform.python_version(),
                   "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                   "machine_memory_bytes": machine_memory(), "platform": platform.platform(),
                   "device": args.device, "device_name": device_name, "precision": PRECISION,
                   "caduceus_config": {"name": args.caduceus_config, **CADUCEUS_CONFIGS[args.caduceus_config],
                                       "d_state": 16, "rcps": True, "bidirectional": True},
                   "git_commit": git_commit(),
                   "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    if args.device == "cuda":
        environment["cuda"] = torch.version.cuda
        environment["gpu_memory_bytes"] = device_memory("cuda")
        try:
            import triton

            environment["triton"] = triton.__version__
        except ImportError:
            environment["triton"] = None
    try:
        import numba

        environment["numba"] = numba.__version__
    except ImportError:
        pass
    calibration = calibrate(args.device)
    print(json.dumps(calibration), flush=True)
    records = []

    def payload(done: bool) -> str:
        result = {"environment": environment, "calibration": calibration, "records": records}
        if done:
            result["total_seconds"] = round(time.perf_counter() - began, 1)
        return json.dumps(result, indent=1)

    def add(record, cost=None, work=None):
        record["precision"] = PRECISION
        if cost and "seconds" in record:
            scale = work * record["bp"]
            record["flops_per_bp"] = cost["flops"] * work
            record["bytes_per_bp"] = cost["bytes"] * work
            record["flop_fraction"] = round(scale * cost["flops"] / calibration["matmul_flop_per_s"] / record["seconds"], 4)
            record["bandwidth_fraction"] = round(scale * cost["bytes"] / calibration["copy_bytes_per_s"] / record["seconds"], 4)
        records.append(record)
        print(json.dumps(record), flush=True)
        if args.out:
            Path(args.out).write_text(payload(False) + "\n")

    def case(spec: dict) -> dict:
        """Run one case within --case-timeout and what is left of --budget."""
        timeout = args.case_timeout
        if args.budget is not None:
            left = args.budget - (time.perf_counter() - began)
            if left < 5:
                return {**spec, "skipped": f"--budget {args.budget:g} s spent"}
            timeout = min(timeout, left)
        return run_case({**spec, "device": args.device, "caduceus_config": args.caduceus_config}, timeout)

    names = ("caduceus-ps", "builtin") if args.device == "cuda" else ("builtin", "caduceus-ps")
    for name in names:
        if not lengths[name]:
            continue
        model = build_model(name, args.caduceus_config)
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
                        if need > device_memory(args.device) // 2:
                            where = "the GPU's" if args.device == "cuda" else "the machine's"
                            add({**spec, "skipped": f"autograd estimate {need / 2**30:.1f} GiB > half {where} memory"})
                            continue
                    add(case(spec), cost, ENGINE_WORK[engine])
        if name == "caduceus-ps" and args.long and "gradient" in engines:
            for backend in kernels[-1:]:  # the last (compiled) backend only: the reference takes far longer
                add(case({"model": name, "length": LONG_LENGTH, "engine": "gradient", "kernels": backend}),
                    cost, ENGINE_WORK["gradient"])
    for length in [int(v) for v in args.paper_lengths.split(",") if v]:
        add(case({"model": "paper-layer", "length": length, "engine": "paper", "variant": "paper-loop",
                  "kernels": "none"}))
        for backend in kernels:
            add(case({"model": "paper-layer", "length": length, "engine": "paper", "variant": "pgf",
                      "kernels": backend}))

    # side by side: each case's speedup of the last kernels backend over the first
    if len(kernels) > 1:
        index = {(r["model"], r["length"], r["engine"], r.get("variant"), r["kernels"]): r for r in records}
        for r in records:
            if r["kernels"] == kernels[-1] and "seconds" in r:
                base = index.get((r["model"], r["length"], r["engine"], r.get("variant"), kernels[0]))
                if base and "seconds" in base:
                    r[f"speedup_over_{kernels[0]}"] = round(base["seconds"] / r["seconds"], 2)
    text = payload(True)
    total = json.loads(text)["total_seconds"]
    if not args.no_save:
        path = results_path(args.device, device_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        print(f"wrote {path}", flush=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(f"total {total} s", flush=True)


if __name__ == "__main__":
    main()
