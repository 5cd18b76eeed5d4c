"""Integrated gradients and expected gradients: gradients along straight paths from baselines.

For an input x, a baseline x' and f the target (summed readout):

    IG(x; x') = (x − x') ⊙ ∫₀¹ ∇f(x' + α (x − x')) dα            (Sundararajan et al. 2017)

Completeness: Σ IG = f(x) − f(x'), exactly for the exact integral; the
quadrature's error is reported as completeness_error = |Σ IG − (f(x) − f̄(x'))|
/ |f(x) − f̄(x')|. With K baselines, IG is the mean over baselines and f̄(x')
the mean of f over them.

Quadrature: Gauss–Legendre with M nodes on [0, 1] (default). The integrand is
a smooth (analytic) function of α for these models, for which Gauss–Legendre
converges exponentially in M and integrates polynomials of degree ≤ 2M−1
exactly, whereas Riemann rules (captum's `riemann_*`) converge as 1/M or
1/M²; the midpoint rule (`midpoint`: nodes (m + ½)/M, weights 1/M) is
offered for comparison with tools that use it.

Expected gradients (Erion et al. 2021; the gradient-based analogue of DeepSHAP)
draw `samples` pairs (baseline x'ₛ from the baseline distribution, αₛ ~ U(0,1))
and average (x − x'ₛ) ⊙ ∇f(x'ₛ + αₛ (x − x'ₛ)); in expectation its sum is
f(x) − E f(x'). Seeded: the same seed gives the same numbers.

Baselines: `zeros` (all-zero rows), `uniform` (0.25 for each base at observed
positions; N rows stay zero), `shuffle` (dinucleotide-preserving shuffles of x,
`pgf.interpret.shuffle`). Every (step, baseline) point is one row of a batch
through `engine.gradient`, `batch_rows` rows per call.

`path_gradient` is the weighted mean of the gradients along the path(s) (the
"hypothetical" counterpart of the attribution: attribution = Σ_k (x − x'_k) ⊙
path_gradient_k / K for one baseline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pgf.engine import Engine, Progress
from pgf.interpret.common import default_rows, fixed_readout, target_values
from pgf.interpret.rc import mirrored_starts, reverse_complement
from pgf.interpret.shuffle import dinucleotide_shuffle
from pgf.models.targets import Target

BASELINES = ("zeros", "uniform", "shuffle")
QUADRATURES = ("gauss-legendre", "midpoint")


@dataclass
class PathResult:
    """Integrated or expected gradients of a batch (b rows of length L)."""

    attributions: torch.Tensor  # (b, L, 4)
    path_gradient: torch.Tensor  # (b, L, 4): weighted mean gradient along the paths
    target_value: torch.Tensor  # (b,): f(x)
    baseline_target_value: torch.Tensor  # (b,): mean f over the baselines
    completeness_error: torch.Tensor  # (b,): |Σ attributions − (f(x) − f̄(x'))| / |f(x) − f̄(x')|


def quadrature(steps: int, rule: str = "gauss-legendre") -> tuple[np.ndarray, np.ndarray]:
    """Nodes in (0, 1) and weights summing to 1 of an M-point rule."""
    if steps < 1:
        raise ValueError("steps must be positive")
    if rule == "gauss-legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    if rule == "midpoint":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    raise ValueError(f"unknown quadrature {rule!r}; choose one of: {', '.join(QUADRATURES)}")


def draw_baselines(onehot: torch.Tensor, kind: str, count: int, rng: np.random.Generator) -> torch.Tensor:
    """(b, count, L, 4) baselines of `kind` for each row of `onehot` (b, L, 4)."""
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; choose one of: {', '.join(BASELINES)}")
    b, L, _ = onehot.shape
    if kind == "zeros":
        return onehot.new_zeros(b, count, L, 4)
    if kind == "uniform":
        observed = (onehot.sum(dim=-1, keepdim=True) > 0).to(onehot.dtype)
        return (0.25 * observed).unsqueeze(1).expand(b, count, L, 4).clone()
    rows = onehot.detach().cpu().numpy()
    shuffles = np.stack([np.stack([dinucleotide_shuffle(row, rng) for _ in range(count)]) for row in rows])
    return torch.from_numpy(shuffles).to(onehot)


def path_attributions(engine: Engine, model, x: torch.Tensor, baselines: torch.Tensor, which: torch.Tensor,
                      alphas: torch.Tensor, weights: torch.Tensor, target: Target, starts: Sequence[int],
                      batch_rows: int | None = None, progress: Progress | None = None) -> PathResult:
    """The core of IG and EG: Σ_p w_p (x − x'_{k_p}) ⊙ ∇f(x'_{k_p} + α_p (x − x'_{k_p})).

    x (b, L, 4); baselines (b, K, L, 4); which (P,) baseline index of each point;
    alphas (b, P); weights (P,) summing to 1. f(x) and f of every baseline come
    from forward sweeps.
    """
    b, L, _ = x.shape
    rows = batch_rows or default_rows(L)
    points = [(i, p) for i in range(b) for p in range(len(which))]
    attributions = torch.zeros_like(x)
    path_gradient = torch.zeros_like(x)
    for first in range(0, len(points), rows):
        chunk = points[first : first + rows]
        index = torch.tensor([i for i, _ in chunk], device=x.device)
        base = torch.stack([baselines[i, which[p]] for i, p in chunk])
        alpha = torch.stack([alphas[i, p] for i, p in chunk]).view(-1, 1, 1)
        inputs = base + alpha * (x[index] - base)
        readout = fixed_readout(target, [starts[i] for i, _ in chunk], x[index])
        gradient = engine.gradient(model, inputs, readout, progress).gradient
        w = torch.stack([weights[p] for _, p in chunk]).view(-1, 1, 1)
        attributions.index_add_(0, index, w * (x[index] - base) * gradient)
        path_gradient.index_add_(0, index, w * gradient)
    K = baselines.shape[1]
    stacked = torch.cat([x, baselines.reshape(b * K, L, 4)])
    selection = torch.cat([x, x.repeat_interleave(K, dim=0)])
    row_starts = list(starts) + [s for s in starts for _ in range(K)]
    values = target_values(engine, model, stacked, selection, target, row_starts, rows, progress)
    fx, fb = values[:b], values[b:].view(b, K).mean(dim=1)
    delta = fx - fb
    error = (attributions.flatten(1).sum(dim=1) - delta).abs() / delta.abs()
    return PathResult(attributions, path_gradient, fx, fb, error)


def _both_strands(run, x: torch.Tensor, baselines: torch.Tensor, target: Target, starts, rc_average: bool) -> PathResult:
    forward = run(x, baselines, list(starts))
    if not rc_average:
        return forward
    backward = run(reverse_complement(x), reverse_complement(baselines), mirrored_starts(target, starts, x.shape[1]))
    return average_strands(forward, backward)


def average_strands(forward: PathResult, backward: PathResult) -> PathResult:
    """Mean of a forward-strand result and a reverse-strand one mapped back (flip length and columns)."""
    attributions = 0.5 * (forward.attributions + reverse_complement(backward.attributions))
    fx = 0.5 * (forward.target_value + backward.target_value)
    fb = 0.5 * (forward.baseline_target_value + backward.baseline_target_value)
    error = (attributions.flatten(1).sum(dim=1) - (fx - fb)).abs() / (fx - fb).abs()
    path = 0.5 * (forward.path_gradient + reverse_complement(backward.path_gradient))
    return PathResult(attributions, path, fx, fb, error)


def integrated_gradients(engine: Engine, model, x: torch.Tensor, target: Target, starts: Sequence[int],
                         baseline: str | torch.Tensor = "zeros", n_baselines: int = 1, steps: int = 32,
                         seed: int = 0, rule: str = "gauss-legendre", rc_average: bool = False,
                         batch_rows: int | None = None, progress: Progress | None = None) -> PathResult:
    """Integrated gradients of x (b, L, 4) with `steps` quadrature nodes and `n_baselines`
    baselines of kind `baseline` (or the baselines themselves, a (b, K, L, 4) tensor)."""
    if isinstance(baseline, torch.Tensor):
        baselines = baseline.to(x)
    else:
        if n_baselines < 1:
            raise ValueError("n_baselines must be positive")
        baselines = draw_baselines(x, baseline, n_baselines, np.random.default_rng(seed))
    nodes, node_weights = quadrature(steps, rule)
    K = baselines.shape[1]
    which = torch.arange(K).repeat_interleave(steps)
    alphas = torch.from_numpy(np.tile(nodes, K)).to(x).expand(x.shape[0], -1)
    weights = torch.from_numpy(np.tile(node_weights, K) / K).to(x)

    def run(inputs, bases, row_starts):
        return path_attributions(engine, model, inputs, bases, which, alphas, weights, target, row_starts, batch_rows, progress)

    return _both_strands(run, x, baselines, target, starts, rc_average)


def expected_gradients(engine: Engine, model, x: torch.Tensor, target: Target, starts: Sequence[int],
                       baseline: str = "shuffle", samples: int = 32, seed: int = 0, rc_average: bool = False,
                       batch_rows: int | None = None, progress: Progress | None = None) -> PathResult:
    """Expected gradients of x (b, L, 4): `samples` random (baseline, α ~ U(0,1)) pairs per row, seeded."""
    if samples < 1:
        raise ValueError("samples must be positive")
    rng = np.random.default_rng(seed)
    baselines = draw_baselines(x, baseline, samples, rng)
    alphas = torch.from_numpy(rng.random((x.shape[0], samples))).to(x)
    which = torch.arange(samples)
    weights = torch.full((samples,), 1.0 / samples, dtype=x.dtype, device=x.device)

    def run(inputs, bases, row_starts):
        return path_attributions(engine, model, inputs, bases, which, alphas, weights, target, row_starts, batch_rows, progress)

    return _both_strands(run, x, baselines, target, starts, rc_average)
