"""The compiled CPU selective-scan kernels alone (numba): forward, adjoint and K-direction tangent,
side by side with the same launchers and kernels at another commit.

One 2,048-position tile by default (what the engines call them on), batch 1, fp32, random inputs
with a gate, D and an initial state; tangents of x, delta, B, C, z and h0. Best of `--repeats`
wall times per kernel, and state updates per second (L E N per call, K L E N for the tangent).
With `--compare-with REV` the launchers and kernels of that commit (`scan/cpu.py` and
`scan/cpu_kernels.py` from `git show`, block sizes included) run in the same process, interleaved
with the working tree's, so the two share the machine's state:

    python -m bench.cpu_scan_kernels --compare-with e417c0d                      # E 512, N 16, K 16
    python -m bench.cpu_scan_kernels --E 64 --N 8 --compare-with e417c0d         # the built-in model's width

One JSON line per (kernels, kernel) on stdout; all of them, with the environment, in a JSON file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import types

from bench.results_io import ROOT, git_commit, write_results

KERNELS_PATH = "kernels/pgf_kernels/scan/cpu_kernels.py"
LAUNCHER_PATH = "kernels/pgf_kernels/scan/cpu.py"
KERNELS_IMPORT = "from pgf_kernels.scan import cpu_kernels\n"


def _source(revision: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{revision}:{path}"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def _module_from(source: str, name: str, folder: str, namespace: dict | None = None) -> types.ModuleType:
    path = os.path.join(folder, f"{name}.py")
    with open(path, "w") as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    module.__dict__.update(namespace or {})
    spec.loader.exec_module(module)
    return module


def launcher_at(revision: str) -> types.ModuleType:
    """`pgf_kernels.scan.cpu` as it was at `revision` (its launchers, block sizes and kernels, from
    `git show`), loaded from a temporary copy: numba compiles its kernels afresh (no disk cache)."""
    folder = tempfile.mkdtemp(prefix="pgf-kernels-")
    kernels = _module_from(_source(revision, KERNELS_PATH), "cpu_kernels_at_revision", folder)
    launcher = _source(revision, LAUNCHER_PATH)
    if KERNELS_IMPORT not in launcher:
        raise SystemExit(f"{revision}:{LAUNCHER_PATH} does not import its kernels as this script expects")
    launcher = launcher.replace(KERNELS_IMPORT, "cpu_kernels = KERNELS_AT_REVISION\n")
    return _module_from(launcher, "cpu_at_revision", folder, {"KERNELS_AT_REVISION": kernels})


def _inputs(L: int, E: int, N: int, K: int):
    import torch

    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    x, z, B, C, D, h0 = r(1, L, E), r(1, L, E), r(1, L, N), r(1, L, N), r(E), r(1, E, N)
    delta = torch.rand(1, L, E, generator=g) * 0.1
    A = -torch.rand(E, N, generator=g) * 2
    tangents = (r(K, 1, L, E), r(K, 1, L, E), None, r(K, 1, L, N), r(K, 1, L, N), None, r(K, 1, L, E), r(K, 1, E, N))
    return (x, delta, A, B, C, D, z, h0), tangents


def measure(cpu, L: int, E: int, N: int, K: int, repeats: int) -> dict[str, float]:
    """Best wall seconds of each kernel through `cpu` (`pgf_kernels.scan.cpu`, or `launcher_at`'s)."""
    (x, delta, A, B, C, D, z, h0), tangents = _inputs(L, E, N, K)
    y, h_last, starts = cpu.scan_forward(x, delta, A, B, C, D, z, h0)
    dy = y.clone().normal_()
    calls = {
        "forward": lambda: cpu.scan_forward(x, delta, A, B, C, D, z, h0),
        "adjoint": lambda: cpu.scan_backward(x, delta, A, B, C, D, z, starts, dy, h_last),
        "tangent": lambda: cpu.scan_tangent(x, delta, A, B, C, D, z, h0, tangents),
    }
    best = {}
    for name, call in calls.items():
        call()  # compile or load
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        best[name] = min(times)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--E", type=int, default=512)
    parser.add_argument("--N", type=int, default=16)
    parser.add_argument("--K", type=int, default=16, help="tangent directions")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every kernels version")
    parser.add_argument("--compare-with", help="a git revision whose kernels run beside the working tree's")
    parser.add_argument("--out", help="JSON file (default bench/results/cpu-scan-kernels.json)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)

    import numba
    import torch

    from pgf_kernels.scan import cpu

    versions = {"working tree": cpu}
    if args.compare_with:
        versions[args.compare_with] = launcher_at(args.compare_with)
    records = []
    for round_number in range(args.rounds):
        for label, launcher in versions.items():
            for kernel, seconds in measure(launcher, args.length, args.E, args.N, args.K, args.repeats).items():
                updates = args.length * args.E * args.N * (args.K if kernel == "tangent" else 1)
                record = {"kernels": label, "round": round_number, "kernel": kernel, "seconds": round(seconds, 6),
                          "g_state_updates_per_s": round(updates / seconds / 1e9, 4)}
                print(json.dumps(record), flush=True)
                records.append(record)
    payload = {
        "environment": {
            "torch": torch.__version__, "numba": numba.__version__, "threads": numba.get_num_threads(),
            "machine": platform.machine(), "python": platform.python_version(), "git_commit": git_commit(),
            "command": " ".join(["python -m bench.cpu_scan_kernels", *(argv if argv is not None else sys.argv[1:])]),
            "length": args.length, "E": args.E, "N": args.N, "K": args.K, "repeats": args.repeats,
            "blocks": {"forward": cpu.FORWARD_BLOCK, "adjoint": cpu.BACKWARD_BLOCK, "tangent": cpu.TANGENT_BLOCK,
                       "tangent_span": cpu.TANGENT_SPAN},
        },
        "records": records,
    }
    if not args.no_save or args.out:
        print(write_results(payload, args.out, "cpu", "scan-kernels", smoke=False), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
