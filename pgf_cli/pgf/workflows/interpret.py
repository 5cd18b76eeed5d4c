"""One batch of regions through an interpretation method: what `pgf attribute` writes for it.

`compute_method(engine, model, inputs, target, region_starts, options)` returns,
per row, the gradient (L, 4) (d f / d onehot at the sequence; reverse-complement
averaged with `rc_average`), f, the per-base score and the method's extra HDF5
datasets with their attributes:

    integrated-gradients  `integrated_gradients` (L, 4), `integrated_gradients_path_gradient` (L, 4);
                          score = Σ over bases of the attribution at each position
    expected-gradients    `expected_gradients` (L, 4), `expected_gradients_path_gradient` (L, 4); score as IG
    ism                   `ism` (L, 4) = f(mutant) − f(ref) (0 at ref, NaN outside the window),
                          `ism_hypothetical` (L, 4) = ism − mean over bases;
                          score = ism_hypothetical at the observed base (NaN outside the window)
    gradient, input-x-gradient, hypothetical, taylor-ism: as pgf.workflows.methods

The numbers come from pgf.interpret, the same functions as the Python API (pgf.api).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from pgf.engine import Engine, Progress
from pgf.errors import PgfUserError
from pgf.interpret import DEFAULT_MAX_ISM_POSITIONS, expected_gradients, integrated_gradients, saturation_mutagenesis
from pgf.interpret.common import fixed_readout
from pgf.interpret.rc import rc_gradient
from pgf.io.regions import parse_region
from pgf.models.targets import Target
from pgf.workflows.methods import METHODS, score_gradient

INTERPRET_METHODS = ("integrated-gradients", "expected-gradients", "ism")
ALL_METHODS = METHODS + INTERPRET_METHODS
DATASET = {"integrated-gradients": "integrated_gradients", "expected-gradients": "expected_gradients", "ism": "ism"}


@dataclass
class MethodOptions:
    """The method and its settings (`pgf attribute --method ... --baseline ... --steps ...`)."""

    method: str
    baseline: str | None = None  # None: zeros for IG, shuffle for EG
    steps: int = 32
    n_baselines: int = 1
    samples: int = 32
    seed: int = 0
    quadrature: str = "gauss-legendre"
    ism_window: tuple[int, int] | None = None  # genome 0-based half-open; None: the whole region
    ism_region: str | None = None  # --ism-window CHROM:START-END (1-based), resolved into ism_window
    ism_max_positions: int = DEFAULT_MAX_ISM_POSITIONS
    force_ism: bool = False
    rc_average: bool = False
    batch_rows: int | None = None


@dataclass
class MethodOutput:
    """Per row of the batch: what the writer needs (numpy, float32 arrays)."""

    gradient: list[np.ndarray]
    target_value: list[float]
    score: list[np.ndarray]
    extras: list[dict[str, np.ndarray]] = field(default_factory=list)
    extra_attributes: list[dict[str, dict[str, object]]] = field(default_factory=list)


def effective_options(method: str, options: MethodOptions | None) -> MethodOptions:
    """`options` (or the defaults) for `method` (the request's --method wins)."""
    return replace(options, method=method) if options is not None else MethodOptions(method)


def needs_compute_method(options: MethodOptions) -> bool:
    """True when the plain gradient-and-score path does not suffice."""
    return options.method in INTERPRET_METHODS or options.rc_average


def resolve_ism_region(options: MethodOptions, chrom_sizes: Mapping[str, int], chroms: Sequence[str] = ()) -> MethodOptions:
    """--ism-window text -> genome 0-based half-open coordinates (checked against the FASTA and
    the regions' sequences `chroms`; that it lies inside each region is checked per batch)."""
    if options.ism_region is None:
        return options
    region = parse_region(options.ism_region, chrom_sizes)
    others = sorted(set(chroms) - {region.chrom})
    if others:
        raise PgfUserError(f"--ism-window {options.ism_region} is on {region.chrom}; regions on {', '.join(others)} cannot hold it")
    return replace(options, ism_window=(region.start, region.end))


def identity(options: MethodOptions) -> str:
    """The settings that change the numbers, as text (a resumed run must match them)."""
    settings = asdict(options)
    settings.pop("batch_rows", None)
    return ",".join(f"{key}={value}" for key, value in sorted(settings.items()))


def check_options(options: MethodOptions) -> None:
    """Refuse impossible settings before any work (user errors)."""
    if options.method not in ALL_METHODS:
        raise PgfUserError(f"unknown method {options.method!r}; choose one of: {', '.join(ALL_METHODS)}")
    for name in ("steps", "n_baselines", "samples"):
        if getattr(options, name) < 1:
            raise PgfUserError(f"--{name.replace('_', '-')} must be positive")
    if options.baseline not in (None, "zeros", "uniform", "shuffle"):
        raise PgfUserError(f"unknown baseline {options.baseline!r}; choose zeros, uniform or shuffle")


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _masked(score: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    score = np.asarray(score, dtype=np.float32).copy()
    score[onehot.sum(axis=1) == 0] = np.nan
    return score


def _gradient(engine, model, x, target, starts, rc_average, progress):
    if rc_average:
        return rc_gradient(engine, model, x, target, starts, progress)
    return engine.gradient(model, x, fixed_readout(target, starts, x), progress)


def compute_method(engine: Engine, model, inputs: torch.Tensor, target: Target, region_starts: Sequence[int],
                   options: MethodOptions, progress: Progress | None = None) -> MethodOutput:
    """Run `options.method` on a batch `inputs` (b, L, 4) of regions starting at `region_starts`."""
    check_options(options)
    starts = [int(s) for s in region_starts]
    onehots = [inputs[i].detach().cpu().numpy().astype(np.uint8) for i in range(inputs.shape[0])]
    if options.method in METHODS:
        result = _gradient(engine, model, inputs, target, starts, options.rc_average, progress)
        gradients = _numpy(result.gradient)
        out = MethodOutput([], [], [])
        for i, onehot in enumerate(onehots):
            scores = score_gradient(gradients[i], onehot, options.method)
            out.gradient.append(gradients[i])
            out.target_value.append(float(result.target_value[i]))
            out.score.append(scores.score)
            out.extras.append(scores.extras)
            extra = {"rc_average": True} if options.rc_average else {}
            out.extra_attributes.append({key: {**value, **extra} for key, value in scores.extra_attributes.items()})
        return out
    if options.method == "ism":
        return _ism(engine, model, inputs, target, starts, options, onehots, progress)
    return _paths(engine, model, inputs, target, starts, options, onehots, progress)


def _paths(engine, model, x, target, starts, options, onehots, progress) -> MethodOutput:
    name = DATASET[options.method]
    common = dict(seed=options.seed, rc_average=options.rc_average, batch_rows=options.batch_rows, progress=progress)
    if options.method == "integrated-gradients":
        baseline = options.baseline or "zeros"
        result = integrated_gradients(engine, model, x, target, starts, baseline=baseline, n_baselines=options.n_baselines,
                                      steps=options.steps, rule=options.quadrature, **common)
        settings = {"baseline": baseline, "n_baselines": options.n_baselines, "steps": options.steps, "quadrature": options.quadrature,
                    "definition": "(x - x') * integral of d f / d onehot along the straight path from each baseline x', mean over baselines"}
    else:
        baseline = options.baseline or "shuffle"
        result = expected_gradients(engine, model, x, target, starts, baseline=baseline, samples=options.samples, **common)
        settings = {"baseline": baseline, "samples": options.samples,
                    "definition": "mean over samples of (x - x') * d f / d onehot at x' + alpha (x - x'), alpha ~ U(0,1)"}
    gradient = _gradient(engine, model, x, target, starts, options.rc_average, progress)
    attributions, path = _numpy(result.attributions), _numpy(result.path_gradient)
    out = MethodOutput(list(_numpy(gradient.gradient)), [float(v) for v in result.target_value], [])
    for i, onehot in enumerate(onehots):
        out.score.append(_masked(attributions[i].sum(axis=1), onehot))
        out.extras.append({name: attributions[i], f"{name}_path_gradient": path[i]})
        out.extra_attributes.append({
            name: {**settings, "seed": options.seed, "rc_average": options.rc_average, "columns": "A,C,G,T",
                   "target_value": float(result.target_value[i]),
                   "baseline_target_value": float(result.baseline_target_value[i]),
                   "completeness_error": float(result.completeness_error[i])},
            f"{name}_path_gradient": {"definition": "weighted mean of d f / d onehot over the path points", "columns": "A,C,G,T"},
        })
    return out


def _ism(engine, model, x, target, starts, options, onehots, progress) -> MethodOutput:
    L = x.shape[1]
    out = MethodOutput([None] * len(starts), [0.0] * len(starts), [None] * len(starts), [None] * len(starts), [None] * len(starts))
    groups: dict[tuple[int, int], list[int]] = {}
    for i, start in enumerate(starts):
        if options.ism_window is None:
            window = (0, L)
        else:
            window = (options.ism_window[0] - start, options.ism_window[1] - start)
            if not 0 <= window[0] < window[1] <= L:
                raise PgfUserError(f"--ism-window {options.ism_window[0] + 1:,}-{options.ism_window[1]:,} does not lie inside "
                                   f"the region starting at {start + 1:,} ({L:,} bp)")
        groups.setdefault(window, []).append(i)
    for window, rows in groups.items():
        try:
            result = saturation_mutagenesis(engine, model, x[rows], target, [starts[i] for i in rows], window=window,
                                            max_positions=options.ism_max_positions, force=options.force_ism,
                                            rc_average=options.rc_average, batch_rows=options.batch_rows, progress=progress)
        except ValueError as exc:
            raise PgfUserError(str(exc)) from None
        ism, hypothetical, score, gradient = (_numpy(t) for t in (result.ism, result.hypothetical, result.score, result.gradient))
        for j, i in enumerate(rows):
            out.gradient[i] = gradient[j]
            out.target_value[i] = float(result.target_value[j])
            out.score[i] = _masked(score[j], onehots[i])
            out.extras[i] = {"ism": ism[j], "ism_hypothetical": hypothetical[j]}
            out.extra_attributes[i] = {
                "ism": {"definition": "f(x with base b at l) - f(x); 0 at the observed base; NaN outside the window and at N",
                        "columns": "A,C,G,T", "window_start": starts[i] + window[0], "window_end": starts[i] + window[1],
                        "target_value": float(result.target_value[j]), "rc_average": options.rc_average,
                        "taylor_ism_correlation": float(result.taylor_correlation[j])},
                "ism_hypothetical": {"definition": "ism minus its mean over the 4 bases", "columns": "A,C,G,T"},
            }
    return out
