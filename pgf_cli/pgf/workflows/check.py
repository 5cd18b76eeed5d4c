"""`pgf check`: both engines on a short slice; how far apart are they on this machine and model?"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pgf.engine import get_engine
from pgf.errors import PgfUserError
from pgf.io.genome import Genome
from pgf.io.onehot import one_hot
from pgf.io.regions import Region, parse_region
from pgf.models.registry import BUILTIN, load_model
from pgf.models.targets import parse_target
from pgf.workflows.common import resolve_device, resolve_dtype
from pgf.workflows.kernels import DEFAULT_KERNELS, checked_kernels

TOLERANCE = {"float32": 1e-4, "float64": 1e-9}  # max |difference| / max |gradient|


@dataclass
class CheckRequest:
    """Everything `pgf check` was asked to do."""

    fasta: Path
    region: str
    model: str = BUILTIN
    length: int = 2000
    tile: int = 256
    target: str | None = None
    dtype: str = "float32"
    device: str = "auto"
    vocab: str | None = None
    kernels: str = DEFAULT_KERNELS


@dataclass
class CheckResult:
    region: Region
    dtype: str
    tile: int
    max_abs_difference: float
    max_rel_difference: float  # relative to the largest |gradient| entry
    target_autograd: float
    target_pgf: float
    seconds_autograd: float
    seconds_pgf: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_rel_difference <= self.tolerance


def run_check(request: CheckRequest) -> CheckResult:
    """Gradients of the same target from `autograd` and `pgf` on the first `length` bp of the region."""
    length, tile, dtype = request.length, request.tile, request.dtype
    if length < 1 or tile < 1:
        raise PgfUserError("--length and --tile must be positive")
    torch_dtype = resolve_dtype(dtype)
    torch_device = resolve_device(request.device)
    backend = checked_kernels(request.kernels, torch_device)
    with Genome(request.fasta) as genome:
        region = parse_region(request.region, genome.chrom_sizes)
        region = Region(region.chrom, region.start, min(region.end, region.start + length), region.name)
        encoded = one_hot(genome.fetch(region))
    loaded = load_model(request.model, device=torch_device, dtype=torch_dtype, vocab=request.vocab)
    target = parse_target(request.target, loaded.model)
    target.check_region(region.start, region.end, str(region), chrom=region.chrom)
    inputs = torch.from_numpy(encoded).to(device=torch_device, dtype=torch_dtype).unsqueeze(0)
    results, seconds = {}, {}
    for name in ("autograd", "pgf"):
        began = time.perf_counter()
        # the tiled engine runs the chosen kernels; plain autograd over the PyTorch reference is the oracle
        engine = get_engine(name, tile=tile, backend=backend if name == "pgf" else "reference")
        results[name] = engine.gradient(loaded.model, inputs, target.readout([region.start]))
        seconds[name] = time.perf_counter() - began
    reference, tiled = results["autograd"], results["pgf"]
    difference = (tiled.gradient - reference.gradient).abs().max().item()
    scale = reference.gradient.abs().max().item()
    return CheckResult(
        region=region,
        dtype=dtype,
        tile=tile,
        max_abs_difference=difference,
        max_rel_difference=difference / scale if scale > 0 else difference,
        target_autograd=float(reference.target_value[0]),
        target_pgf=float(tiled.target_value[0]),
        seconds_autograd=seconds["autograd"],
        seconds_pgf=seconds["pgf"],
        tolerance=TOLERANCE[dtype],
    )
