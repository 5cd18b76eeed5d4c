"""Shared by the benchmarks: the code version and where raw results are written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit() -> str:
    """HEAD's hash, with "-dirty" when the working tree has changes; "unknown" outside git.
    PGF_GIT_COMMIT overrides it (a copy of the tree without .git, e.g. on a GPU machine)."""
    if os.environ.get("PGF_GIT_COMMIT"):
        return os.environ["PGF_GIT_COMMIT"]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_results(payload: dict, out: str | None, device_name: str, bench_name: str, smoke: bool) -> str:
    """Write `payload` as JSON to `out`, by default bench/results/<device>-<bench>.json
    (a temporary folder for smoke runs); returns the path."""
    if out is None:
        folder = tempfile.gettempdir() if smoke else os.path.join(ROOT, "bench", "results")
        out = os.path.join(folder, f"{'cpu-smoke' if smoke else slug(device_name)}-{bench_name}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as handle:
        json.dump(payload, handle, indent=1)
    print(f"wrote {out}", file=sys.stderr)
    return out
