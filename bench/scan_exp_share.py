"""What the decay's exp costs the compiled CPU forward scan (issue #31): the shipped forward kernel
beside two copies of its inner loop, one with the decay exp(delta A) and one with a multiply in
its place (not the scan's math: it only shows what the loop costs without the exp).

Caduceus-ps large's scan width by default (E 512, N 16), one sequence of `--length` positions,
batch 1, fp32, no gate and no D (the loop copies have neither); blocks of 64 channels as the
kernel's. Best of `--repeats` wall times, after a warm-up call, interleaved over `--rounds`; G
state updates per second (L E N per call). The exp's share of the loop is
1 - (seconds without) / (seconds with):

    python -m bench.scan_exp_share [--length 8192] [--E 512] [--N 16] [--repeats 5] [--rounds 3]

One JSON line per (round, variant) on stdout; all of them, with the environment, in a JSON file
(default bench/results/cpu-2core-scan-exp-share.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

from bench.results_io import ROOT, git_commit, write_results

BLOCK = 64


def _loops():
    """The forward kernel's inner loop (state-major block of channels, decay, update, readout),
    compiled twice: with the decay's exp, and with a multiply instead."""
    import numpy as np
    from numba import njit, prange

    from pgf_kernels.cpu_common import FASTMATH
    from pgf_kernels.cpu_exp import fast_exp

    def make(with_exp: bool):
        @njit(parallel=True, fastmath=FASTMATH)
        def loop(dt, x, B, C, At, y, block):
            b, L, E = x.shape
            N = At.shape[0]
            n_blocks = E // block
            for job in prange(b * n_blocks):
                bi = job // n_blocks
                e0 = (job % n_blocks) * block
                h = np.zeros((N, block), dtype=np.float32)
                Ab = np.empty((N, block), dtype=np.float32)
                d = np.empty(block, dtype=np.float32)
                u = np.empty(block, dtype=np.float32)
                acc = np.empty(block, dtype=np.float32)
                for n in range(N):
                    for k in range(block):
                        Ab[n, k] = At[n, e0 + k]
                for t in range(L):
                    for k in range(block):
                        d[k] = dt[bi, t, e0 + k]
                        u[k] = d[k] * x[bi, t, e0 + k]
                        acc[k] = 0.0
                    for n in range(N):
                        bn = B[bi, t, n]
                        cn = C[bi, t, n]
                        for k in range(block):
                            decay = fast_exp(d[k] * Ab[n, k]) if with_exp else d[k] * Ab[n, k]
                            hv = decay * h[n, k] + u[k] * bn
                            h[n, k] = hv
                            acc[k] += cn * hv
                    for k in range(block):
                        y[bi, t, e0 + k] = acc[k]

        return loop

    return make(True), make(False)


def measure(length: int, E: int, N: int, repeats: int, rounds: int) -> list[dict]:
    """One record per (round, variant): best seconds of `repeats` calls and G state updates/s."""
    import numpy as np
    import torch

    from pgf_kernels.scan.cpu import scan_forward

    if E % BLOCK:
        raise SystemExit(f"--E must be a multiple of {BLOCK}")
    g = torch.Generator().manual_seed(0)
    x, B, C = torch.randn(1, length, E, generator=g), torch.randn(1, length, N, generator=g), torch.randn(1, length, N, generator=g)
    delta = torch.rand(1, length, E, generator=g) * 0.1
    A = -torch.rand(E, N, generator=g) * 4 - 0.5
    with_exp, without_exp = _loops()
    At = np.ascontiguousarray(A.numpy().T)
    y = np.empty((1, length, E), dtype=np.float32)
    arrays = (delta.numpy(), x.numpy(), B.numpy(), C.numpy())
    variants = {
        "shipped forward kernel": lambda: scan_forward(x, delta, A, B, C),
        "loop with exp": lambda: with_exp(*arrays, At, y, BLOCK),
        "loop without exp": lambda: without_exp(*arrays, At, y, BLOCK),
    }
    for call in variants.values():
        call()  # compile and warm up
    updates = length * E * N
    records = []
    for round_ in range(rounds):
        for name, call in variants.items():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            best = min(times)
            records.append({"round": round_, "variant": name, "seconds": round(best, 5),
                            "g_state_updates_per_s": round(updates / best / 1e9, 3)})
            print(json.dumps(records[-1]), flush=True)
    return records


def summary(records: list[dict]) -> dict:
    """Median seconds per variant and the exp's share of the loop, 1 - without / with."""
    median = {name: statistics.median(r["seconds"] for r in records if r["variant"] == name)
              for name in dict.fromkeys(r["variant"] for r in records)}
    return {"median_seconds": median,
            "exp_share_of_loop": round(1 - median["loop without exp"] / median["loop with exp"], 3)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=8192)
    parser.add_argument("--E", type=int, default=512)
    parser.add_argument("--N", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="JSON file (default bench/results/cpu-2core-scan-exp-share.json)")
    args = parser.parse_args(argv)
    import torch

    records = measure(args.length, args.E, args.N, args.repeats, args.rounds)
    payload = {
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
                        "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                        "git_commit": git_commit(), "precision": "fp32",
                        "shape": {"length": args.length, "E": args.E, "N": args.N, "block": BLOCK},
                        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
                        "command": " ".join(["python -m bench.scan_exp_share", *(argv if argv is not None else sys.argv[1:])])},
        "records": records,
        "summary": summary(records),
    }
    print(json.dumps(payload["summary"]), file=sys.stderr)
    write_results(payload, args.out or os.path.join(ROOT, "bench", "results", "cpu-2core-scan-exp-share.json"),
                  "cpu", "scan-exp-share", smoke=False)
    return payload


if __name__ == "__main__":
    main()
