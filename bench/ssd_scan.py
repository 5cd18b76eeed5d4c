"""The Mamba-2 (SSD) scan alone against the Mamba-1 selective scan, side by side in one run (issue #30).

Both scans carry the inner width of a PlantCAD2-Small-shaped mixer (d_model 768, expand 2: 1,536
channels): SSD with 24 heads of 64, state 128, 1 group (mamba_ssm's Mamba2 defaults; PlantCAD2's
own d_state and headdim are not confirmed), Mamba-1 with 1,536 channels of state 16. For each
length, each scan runs over the sequence in tiles of 2,048 positions carrying its state, as the
engines call it: its forward (no grad) and its VJP (the saving forward + VJP, as the adjoint
engine's reverse pass runs them per tile: for the SSD the chunked forward keeping chunk starts and
the hand-written chunked VJP, for Mamba-1 the numba kernels), on the CPU backends, fp32, batch 1.
Mode "vjp-autograd" runs the SSD's earlier reverse pass in the same run for the ratio: per tile,
the chunked forward again under autograd and autograd's backward through it (what the adjoint ran
per tile before the hand-written VJP; "vjp" is what it runs now). Run it on a quiet
machine: another process using the cores slows the matmul-bound SSD several-fold. Counted work per
position (multiply-add = 2): SSD chunked (chunk T) = 2 T (G N + H P) + 6 H P N (within-chunk C·Bᵀ
and its product with dt·x; the state in, out and its readout); Mamba-1 = 6 E N. The fraction is
that work over the calibrated fp32 matmul rate (bench.throughput.calibrate) and the seconds.

    python -m bench.ssd_scan [--lengths 8192,131072] [--out FILE]

Writes bench/results/cpu-2core-ssd-scan.json (environment, calibration, records).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

H, P, N, G, CHUNK = 24, 64, 128, 1, 64
E, N1 = H * P, 16
TILE = 2048
RESULTS = Path(__file__).resolve().parent / "results" / "cpu-2core-ssd-scan.json"


def ssd_inputs(length: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, length, H, P, generator=g)
    dt = torch.nn.functional.softplus(torch.randn(1, length, H, generator=g) - 3)
    A = -torch.exp(torch.rand(H, generator=g) * 2)
    B, C = torch.randn(1, length, G, N, generator=g), torch.randn(1, length, G, N, generator=g)
    return x, dt, A, B, C, torch.ones(H)


def mamba1_inputs(length: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, length, E, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(1, length, E, generator=g) - 3)
    A = -torch.arange(1, N1 + 1, dtype=torch.float32).repeat(E, 1)
    B, C = torch.randn(1, length, N1, generator=g), torch.randn(1, length, N1, generator=g)
    return x, delta, A, B, C, torch.ones(E), torch.randn(1, length, E, generator=g)


def tiles(inputs: tuple[torch.Tensor, ...], length: int):
    """Each tile's slice of the inputs (per-position tensors cut, parameters whole)."""
    for start in range(0, length, TILE):
        yield [t[:, start:start + TILE] if t.dim() > 1 and t.shape[1] == length else t for t in inputs]


def run(scan: str, mode: str, length: int) -> float:
    """Seconds of one pass over `length` positions in tiles of TILE, the state carried.
    "vjp-autograd" times only the VJPs: its tiles' start states are computed beforehand."""
    from pgf_kernels import selective_scan_saving, selective_scan_vjp, ssd_scan, ssd_scan_saving, ssd_scan_vjp
    from pgf_kernels.ssd.ops import _recomputed_vjp

    inputs = ssd_inputs(length) if scan == "ssd" else mamba1_inputs(length)
    if mode == "vjp-autograd":
        states = [None]
        with torch.no_grad():
            for x, dt, A, B, C, D in tiles(inputs, length):
                states.append(ssd_scan(x, dt, A, B, C, D, states[-1], backend="cpu", chunk=CHUNK)[1])
        began = time.perf_counter()
        for (x, dt, A, B, C, D), state in zip(tiles(inputs, length), states):
            _recomputed_vjp(x, dt, A, B, C, D, state, torch.ones_like(x), None, "cpu", CHUNK)
        return time.perf_counter() - began
    began = time.perf_counter()
    state = None
    for tile in tiles(inputs, length):
        if scan == "ssd":
            x, dt, A, B, C, D = tile
            if mode == "vjp":
                y, after, residual = ssd_scan_saving(x, dt, A, B, C, D, state, backend="cpu", chunk=CHUNK)
                ssd_scan_vjp(residual, x, dt, A, B, C, D, torch.ones_like(x), None)
            else:
                with torch.no_grad():
                    y, after = ssd_scan(x, dt, A, B, C, D, state, backend="cpu", chunk=CHUNK)
        else:
            x, delta, A, B, C, D, z = tile
            y, after, residual = selective_scan_saving(x, delta, A, B, C, D, z, h0=state, backend="cpu")
            if mode == "vjp":
                selective_scan_vjp(residual, x, delta, A, B, C, D, z, torch.ones_like(y), None)
        state = after
    return time.perf_counter() - began


def work_per_position(scan: str) -> int:
    if scan == "ssd":
        return 2 * CHUNK * (G * N + H * P) + 6 * H * P * N
    return 6 * E * N1


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="8192,131072")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    from bench.results_io import git_commit
    from bench.throughput import calibrate

    for scan in ("ssd", "mamba1"):  # warm-up: numba compiles or loads its cache, MKL spins up
        run(scan, "vjp", 512)
    calibration = calibrate("cpu")
    records = []
    for length in [int(v) for v in args.lengths.split(",") if v]:
        for mode in ("forward", "vjp"):
            for scan in ("ssd", "mamba1"):
                seconds = run(scan, mode, length)
                work = work_per_position(scan) * length * (3 if mode == "vjp" else 1)
                record = {"scan": scan, "mode": mode, "length": length, "seconds": round(seconds, 4),
                          "positions_per_s": round(length / seconds), "flop": work,
                          "flop_fraction": round(work / calibration["matmul_flop_per_s"] / seconds, 4)}
                records.append(record)
                print(json.dumps(record), flush=True)
            ssd, mamba1 = records[-2], records[-1]
            ssd["seconds_over_mamba1"] = round(ssd["seconds"] / mamba1["seconds"], 2)
        seconds = round(run("ssd", "vjp-autograd", length), 4)
        records.append({"scan": "ssd", "mode": "vjp-autograd", "length": length, "seconds": seconds,
                        "positions_per_s": round(length / seconds),
                        "seconds_over_vjp": round(seconds / records[-2]["seconds"], 2)})  # both as recorded
        print(json.dumps(records[-1]), flush=True)
    import pgf

    payload = {
        "environment": {"pgf": pgf.__version__, "torch": torch.__version__, "python": platform.python_version(),
                        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                        "git_commit": git_commit(), "command": " ".join(["python -m bench.ssd_scan", *(argv or sys.argv[1:])]),
                        "ssd": {"heads": H, "headdim": P, "d_state": N, "groups": G, "chunk": CHUNK, "backend": "cpu"}, "tile": TILE,
                        "mamba1": {"channels": E, "d_state": N1, "backend": "cpu"}, "precision": "fp32", "batch": 1},
        "calibration": calibration,
        "records": records,
    }
    Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return payload


if __name__ == "__main__":
    main()
