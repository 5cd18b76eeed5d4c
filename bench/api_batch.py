"""`pgf.gradients` on a batch of equal-length regions: kbp/s and peak RSS, as one JSON line.

    python -m bench.api_batch                      # 100 regions of 2,048 bp, the built-in model
    python -m bench.api_batch --regions 8 --length 512 --model random-test

The CPU engine sweeps such a batch a few rows at a time (TiledEngine.plan); the JSON says how.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=100)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--model", default="builtin")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    import pgf
    from pgf.engine import TiledEngine

    model = pgf.load_model(args.model)
    rng = np.random.default_rng(0)
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(args.regions, args.length))]
    pgf.gradients(model, x[:2])  # warm-up: the compiled kernels
    began = time.perf_counter()
    result = pgf.gradients(model, x)
    seconds = time.perf_counter() - began
    record = {
        "benchmark": "api_batch", "model": args.model, "regions": args.regions, "length": args.length,
        "row_groups": len(TiledEngine().plan(torch.from_numpy(x))), "seconds": round(seconds, 3),
        "kbp_per_s": round(args.regions * args.length / seconds / 1000, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "finite": bool(torch.isfinite(result.gradient).all()), "torch": torch.__version__,
        "machine": platform.machine(), "threads": torch.get_num_threads(),
    }
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
