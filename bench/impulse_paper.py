"""The paper's impulse-response setup, side by side: pgf's tangent sweep vs the paper's tile-64 JVP loop.

One selective-SSM layer (a Mamba mixer, d_model 128 -> d_inner D = 256, N = 16,
fp32), input a random sequence, tangent a unit impulse on channel 0 at 0.8·L;
output J·v over all L positions. Two implementations of the same function:

  pgf    pgf's tangent engine (`scan_jvp`, tile 2048): in-tile scan that only
         multiplies decays <= 1, exact carried (state, state tangent).
  paper  a re-implementation of the paper's loop in plain PyTorch: tiles of 64,
         torch.func.jvp of a tile function whose in-tile scan is the log-space
         cumsum h_t = exp(cs_t) * (h_0 + sum_s exp(-cs_s) * b_s), carrying
         (state, tangent) detached at tile edges.

Two weight settings: `mamba-init` (the usual Mamba initialisation, where
|delta·A| summed over a 64-step tile passes ~88 for the slow-decay states and
exp(-cs) overflows fp32) and `gentle` (steps scaled down 20x, where it does
not). Each measurement runs in a child process and prints one JSON line with
time, peak memory, how many outputs are finite, and the largest difference
between the two tracks (relative to the pgf track's largest value).

    python -m bench.impulse_paper [--lengths 10000,32768,131072] [--device cuda]
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

D_MODEL, N_STATE, PAPER_TILE = 128, 16, 64


def build_layer(setting: str):
    import torch

    from pgf.models.mamba import MambaMixer

    torch.manual_seed(0)
    mixer = MambaMixer(D_MODEL, d_state=N_STATE)
    if setting == "gentle":
        with torch.no_grad():  # softplus^-1 of dt / 20
            dt = torch.nn.functional.softplus(mixer.dt_proj.bias) / 20
            mixer.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            mixer.dt_proj.weight.mul_(0.05)
    return mixer.eval().requires_grad_(False)


def paper_tile(mixer, u_tile, h0, conv_tail):
    """One tile of the layer with the paper's log-space in-tile scan (a faithful restatement)."""
    import torch
    import torch.nn.functional as F

    x, z = mixer.in_proj(u_tile).chunk(2, dim=-1)
    conv_input = torch.cat([conv_tail, x.transpose(1, 2)], dim=2)
    x = F.silu(F.conv1d(conv_input, mixer.conv1d.weight, mixer.conv1d.bias, groups=mixer.d_inner).transpose(1, 2))
    dt_low, B, C = torch.split(mixer.x_proj(x), [mixer.dt_rank, mixer.d_state, mixer.d_state], dim=-1)
    delta = F.softplus(mixer.dt_proj(dt_low))
    A = -torch.exp(mixer.A_log)
    log_a = delta.unsqueeze(-1) * A  # (b, T, E, N)
    b = (delta * x).unsqueeze(-1) * B.unsqueeze(2)
    cs = torch.cumsum(log_a, dim=1)
    h = torch.exp(cs) * (h0.unsqueeze(1) + torch.cumsum(torch.exp(-cs) * b, dim=1))  # the overflow-prone form
    y = torch.einsum("bten,btn->bte", h, C) + mixer.D * x
    y = y * F.silu(z)
    return mixer.out_proj(y), h[:, -1], conv_input[..., -(mixer.d_conv - 1):]


def run_paper(mixer, u, u_dot):
    import torch
    from torch.func import jvp

    b, L, _ = u.shape
    h = torch.zeros(b, mixer.d_inner, mixer.d_state, device=u.device)
    tail = torch.zeros(b, mixer.d_inner, mixer.d_conv - 1, device=u.device)
    h_dot, tail_dot = torch.zeros_like(h), torch.zeros_like(tail)
    outputs = []
    for s in range(0, L, PAPER_TILE):
        e = min(s + PAPER_TILE, L)
        (y, h, tail), (y_dot, h_dot, tail_dot) = jvp(
            lambda ut, h0, ct: paper_tile(mixer, ut, h0, ct), (u[:, s:e], h, tail), (u_dot[:, s:e], h_dot, tail_dot)
        )
        h, tail, h_dot, tail_dot = h.detach(), tail.detach(), h_dot.detach(), tail_dot.detach()
        outputs.append(y_dot.detach())
    return torch.cat(outputs, dim=1)


def run_pgf(mixer, u, u_dot, tile):
    from pgf.engine import Scan
    from pgf.engine.streaming import Dual, TangentMode
    from pgf.engine.tile_primitives import TileOutput, tile_spans

    scan, mode, x = Scan(mixer), TangentMode(1), Dual(u, u_dot.unsqueeze(0))
    state, track = mode.zero_state(scan, x), TileOutput(u.shape[1])
    for s, e in tile_spans(u.shape[1], tile):
        out, state = mode.call(scan.tile, mode.slice(x, s, e), state)
        track.write(s, e, out.tangent[0])
    return track.value


def child(method: str, setting: str, length: int, device: str, tile: int, save: str) -> dict:
    import numpy as np
    import torch

    mixer = build_layer(setting).to(device)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(1, length, D_MODEL, generator=g).to(device)
    u_dot = torch.zeros_like(u)
    u_dot[0, int(0.8 * length), 0] = 1.0
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    with torch.no_grad():
        track = run_paper(mixer, u, u_dot) if method == "paper" else run_pgf(mixer, u, u_dot, tile)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    values = track[0].float().cpu().numpy()
    np.save(save, values)
    record = {
        "method": method, "setting": setting, "length": length, "tile": PAPER_TILE if method == "paper" else tile,
        "seconds": round(seconds, 3), "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "finite_fraction": float(np.isfinite(values).mean()), "device": device,
    }
    if device == "cuda":
        record["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="10000,32768,131072")
    parser.add_argument("--settings", default="mamba-init,gentle")
    parser.add_argument("--tile", type=int, default=2048)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--out")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "SETTING", "LENGTH"), help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]), args.device, args.tile, args.save)))
        return

    import numpy as np
    import torch

    import pgf

    header = {"environment": {
        "pgf": pgf.__version__, "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "device": args.device, "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "layer": f"Mamba mixer d_model {D_MODEL}, d_inner {2 * D_MODEL}, d_state {N_STATE}, fp32; impulse on channel 0 at 0.8 L",
    }}
    lines = [header]
    print(json.dumps(header), flush=True)
    workdir = tempfile.mkdtemp(prefix="pgf-impulse-")
    for setting in args.settings.split(","):
        for length in [int(x) for x in args.lengths.split(",")]:
            saved = {}
            for method in ("pgf", "paper"):
                save = os.path.join(workdir, f"{method}-{setting}-{length}.npy")
                command = [sys.executable, __file__, "--child", method, setting, str(length), "--device", args.device,
                           "--tile", str(args.tile), "--save", save]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    record = {"method": method, "setting": setting, "length": length, "failed": done.stderr.strip().splitlines()[-1:]}
                else:
                    record = json.loads(done.stdout.strip().splitlines()[-1])
                    saved[method] = np.load(save)
                if method == "paper" and len(saved) == 2:
                    ours, theirs = saved["pgf"], saved["paper"]
                    finite = np.isfinite(theirs)
                    scale = float(np.abs(ours).max())
                    record["max_rel_difference_to_pgf"] = float(np.abs(theirs - ours).max() / scale) if finite.all() else None
                    record["max_rel_difference_to_pgf_where_finite"] = float(np.abs(theirs - ours)[finite].max() / scale) if finite.any() else None
                    base = lines[-1]
                    if "seconds" in base and "seconds" in record:
                        record["time_ratio_to_pgf"] = round(record["seconds"] / base["seconds"], 3)
                        key = "peak_cuda_bytes" if args.device == "cuda" else "peak_rss_bytes"
                        record["peak_ratio_to_pgf"] = round(record[key] / base[key], 3)
                lines.append(record)
                print(json.dumps(record), flush=True)
    if args.out:
        with open(args.out, "a") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in lines)


if __name__ == "__main__":
    main()
