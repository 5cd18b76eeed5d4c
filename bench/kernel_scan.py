"""Selective-scan kernels side by side on one GPU: Triton forward, tangent and adjoint, the
PyTorch reference forward, and plain autograd through the reference (forward + backward).

For each length (default 2^14 ... 2^20), E = 512, N = 16, batch 1, fp32 and bf16 inputs
(A, D and the state stay fp32): median time over repeats (CUDA events, after warm-up),
effective bandwidth of the minimum traffic (inputs read + outputs written) and its fraction
of the device's copy bandwidth (a large tensor copy measured in the same run), and peak
memory above the inputs (torch.cuda.max_memory_allocated, reset per case). Out-of-memory
cases are recorded as such. One JSON line per case on stdout; all of them, with the
environment, in a JSON file.

    python -m bench.kernel_scan                                  # CUDA; writes bench/results/<device>-kernel-scan.json
    python -m bench.kernel_scan --lengths 1048576 --blocks '{"bwd_e": 8}'   # try another block shape
    python -m bench.kernel_scan --smoke                          # tiny CPU run (Triton interpreter) to check the script

Methods: triton-forward (scan_forward: y, h_last and the chunk starts), triton-tangent
(scan_tangent, K directions of x, delta, B, C, z and h0 tangents, primal and tangents in one
pass), triton-adjoint (scan_backward from saved chunk starts: dx, ddelta, dB, dC, dz, dh0),
reference-forward (selective_scan_ref, no grad), reference-autograd (selective_scan_ref
forward + torch.autograd backward to the same inputs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

from bench.results_io import git_commit, write_results

METHODS = ("triton-forward", "triton-tangent", "triton-adjoint", "reference-forward", "reference-autograd")
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


class Timer:
    """Median wall time of a callable: CUDA events on CUDA, perf_counter on CPU."""

    def __init__(self, device):
        import torch

        self.torch, self.cuda = torch, device.type == "cuda"

    def __call__(self, fn, warmup: int, repeats: int) -> float:
        torch = self.torch
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                began = time.perf_counter()
                fn()
                times.append(time.perf_counter() - began)
        return statistics.median(times)


def copy_bandwidth(device, timer: Timer, gigabytes: float) -> float:
    """Bytes per second of a large device-to-device copy (read + write)."""
    import torch

    n = int(gigabytes * 2**30 / 4)
    src = torch.empty(n, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    seconds = timer(lambda: dst.copy_(src), warmup=2, repeats=5)
    del src, dst
    return 2 * n * 4 / seconds


def make_inputs(L, E, N, batch, dtype, K, device, with_tangents, seed=0):
    """Mamba-like inputs made on the device: activations in `dtype`, A, D, h0 in fp32."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    normal = lambda *shape: torch.randn(*shape, generator=g, device=device).to(dtype)  # noqa: E731
    x, z, B, C = normal(batch, L, E), normal(batch, L, E), normal(batch, L, N), normal(batch, L, N)
    delta = (0.001 + 0.1 * torch.rand(batch, L, E, generator=g, device=device)).to(dtype)
    A = -torch.arange(1, N + 1, dtype=torch.float32, device=device).repeat(E, 1)
    D = torch.ones(E, device=device)
    h0 = torch.randn(batch, E, N, generator=g, device=device)
    tangents = None
    if with_tangents:
        tangents = (normal(K, batch, L, E), 0.01 * normal(K, batch, L, E), None, normal(K, batch, L, N),
                    normal(K, batch, L, N), None, normal(K, batch, L, E), torch.randn(K, batch, E, N, generator=g, device=device))
    return (x, delta, A, B, C, D, z, h0), tangents


def traffic(method: str, L: int, E: int, N: int, batch: int, K: int, item: int, chunk: int) -> int:
    """Minimum bytes moved: inputs read once, outputs written once (fp32 states, small
    per-channel tensors and the 1/chunk chunk-start states included)."""
    le, ln, en = batch * L * E, batch * L * N, batch * E * N
    params = (E * N + E) * 4
    starts = batch * -(-L // chunk) * E * N * 4
    forward = (3 * le + 2 * ln) * item + params + en * 4 + le * item + en * 4  # x, delta, z, B, C, h0 -> y, h_last
    if method in ("triton-forward", "reference-forward"):
        return forward + (starts if method == "triton-forward" else 0)
    adjoint = (4 * le + 2 * ln) * item + params + starts + en * 4 + (3 * le + 2 * ln) * item + en * 4  # + dy, dh -> grads
    if method == "triton-adjoint":
        return adjoint
    if method == "reference-autograd":
        return forward + adjoint - starts
    tangent = forward + K * ((3 * le + 2 * ln) * item + en * 4) + K * (le * item + en * 4)
    return tangent


def run_case(method, L, E, N, batch, dtype_name, K, chunk, blocks, device, timer, warmup, repeats):
    import torch

    from pgf_kernels.scan import selective_scan_ref
    from pgf_kernels.scan import triton as triton_scan

    dtype = getattr(torch, DTYPES[dtype_name])
    record = {"method": method, "length": L, "E": E, "N": N, "batch": batch, "dtype": dtype_name,
              "K": K if method == "triton-tangent" else None, "chunk": chunk}
    inputs = tangents = None
    try:
        inputs, tangents = make_inputs(L, E, N, batch, dtype, K, device, with_tangents=method == "triton-tangent")
        x, delta, A, B, C, D, z, h0 = inputs
        extra = {}
        if method == "triton-adjoint":
            _, _, extra["starts"] = triton_scan.scan_forward(*inputs, chunk=chunk, blocks=blocks)
            extra["dy"] = torch.randn_like(x)
            extra["dh"] = torch.randn_like(h0)
        if method == "reference-autograd":
            extra["dy"] = torch.randn_like(x)
            extra["dh"] = torch.randn_like(h0)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()

        if method == "triton-forward":
            fn = lambda: triton_scan.scan_forward(*inputs, chunk=chunk, blocks=blocks)  # noqa: E731
        elif method == "triton-tangent":
            fn = lambda: triton_scan.scan_tangent(*inputs, tangents, chunk=chunk, blocks=blocks)  # noqa: E731
        elif method == "triton-adjoint":
            fn = lambda: triton_scan.scan_backward(x, delta, A, B, C, D, z, extra["starts"], extra["dy"], extra["dh"],  # noqa: E731
                                                   chunk=chunk, blocks=blocks)
        elif method == "reference-forward":

            def fn():
                with torch.no_grad():
                    return selective_scan_ref(*inputs)
        else:

            def fn():
                leaves = [t.detach().requires_grad_(i not in (2, 5)) for i, t in enumerate(inputs)]
                y, h = selective_scan_ref(*leaves)
                torch.autograd.backward((y, h), (extra["dy"], extra["dh"]))
                return [t.grad for t in leaves]

        seconds = timer(fn, warmup, repeats)
        moved = traffic(method, L, E, N, batch, K, torch.finfo(dtype).bits // 8, chunk)
        record.update(seconds=seconds, bytes=moved, bytes_per_second=moved / seconds)
        if device.type == "cuda":
            record["peak_bytes_above_inputs"] = torch.cuda.max_memory_allocated() - base
        if method in ("triton-forward", "reference-forward") and L <= 2**14:
            try:  # a spot check of the numbers being timed
                y, h, *_ = fn()
                with torch.no_grad():
                    y_ref, h_ref = selective_scan_ref(*[t.double() for t in inputs])
                record["max_rel_diff_to_fp64_reference"] = float(max(
                    (y.double() - y_ref).abs().max() / y_ref.abs().max(), (h.double() - h_ref).abs().max() / h_ref.abs().max()
                ))
            except torch.cuda.OutOfMemoryError:
                record["max_rel_diff_to_fp64_reference"] = None
    except torch.cuda.OutOfMemoryError:
        record["oom"] = True
    finally:
        inputs = tangents = extra = None  # noqa: F841
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return record


def environment(device, args, chunk) -> dict:
    import torch
    import triton

    cpu = f"cpu ({platform.processor() or platform.machine()}, Triton interpreter)"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    return {
        "script": "bench/kernel_scan.py",
        "device_name": name,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "config": {"lengths": args.lengths, "E": args.E, "N": args.N, "batch": args.batch, "dtypes": args.dtypes,
                   "K": args.K, "chunk": chunk, "blocks": args.blocks, "warmup": args.warmup, "repeats": args.repeats,
                   "methods": args.methods, "smoke": args.smoke},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default=",".join(str(2**k) for k in range(14, 21)))
    parser.add_argument("--E", type=int, default=512)
    parser.add_argument("--N", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--K", type=int, default=1, help="tangent directions sharing one primal")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--chunk", type=int, default=None, help="positions per chunk (default: the kernels' default)")
    parser.add_argument("--blocks", default=None, help="JSON block overrides for the launchers, e.g. '{\"bwd_e\": 8}'")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--copy-gb", type=float, default=2.0, help="size of the copy that measures bandwidth")
    parser.add_argument("--out", help="JSON file (default bench/results/<device>-kernel-scan.json; a temp file with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU in the Triton interpreter (checks the script)")
    args = parser.parse_args()

    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # must precede the first import of triton / pgf_kernels
        args.lengths, args.E, args.N, args.warmup, args.repeats, args.copy_gb = "64,200", 4, 4, 0, 1, 0.01

    import torch

    if not args.smoke and not torch.cuda.is_available():
        sys.exit("bench/kernel_scan.py measures GPU kernels and needs CUDA (none found). "
                 "Run it on a GPU machine, or use --smoke for a tiny CPU check of the script.")
    device = torch.device("cuda" if not args.smoke else "cpu")
    from pgf_kernels.scan import triton as triton_scan

    chunk = args.chunk or triton_scan.default_chunk(device)
    blocks = json.loads(args.blocks) if args.blocks else None
    timer = Timer(device)
    env = environment(device, args, chunk)
    env["copy_bytes_per_second"] = copy_bandwidth(device, timer, args.copy_gb)
    print(json.dumps(env), flush=True)
    records = []
    for L in [int(v) for v in args.lengths.split(",")]:
        for dtype_name in args.dtypes.split(","):
            for method in args.methods.split(","):
                if method not in METHODS:
                    sys.exit(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
                record = run_case(method, L, args.E, args.N, args.batch, dtype_name, args.K, chunk, blocks, device, timer,
                                  args.warmup, args.repeats)
                if "bytes_per_second" in record:
                    record["fraction_of_copy_bandwidth"] = record["bytes_per_second"] / env["copy_bytes_per_second"]
                records.append(record)
                print(json.dumps(record), flush=True)
    write_results({"environment": env, "cases": records}, args.out, env["device_name"], "kernel-scan", args.smoke)


if __name__ == "__main__":
    main()
