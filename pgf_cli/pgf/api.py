"""pgf for notebooks: functions of (model, one-hot tensor, ...) like tangermeme's.

    import pgf
    model = pgf.load_model("builtin")                      # or "random-test", or a checkpoint directory
    X = torch.from_numpy(pgf_one_hot)                       # (batch, L, 4) float, columns A C G T, N = all-zero row
    g = pgf.gradients(model, X, target="sum:expression")    # GradientResult: .gradient (b, L, 4), .target_value (b,)
    ig = pgf.integrated_gradients(model, X, baseline="shuffle", n_baselines=4, steps=32)
    sm = pgf.ism(model, X, window=(100, 200))               # ISMResult: .ism (b, L, 4), .hypothetical, .score
    fx = pgf.effects(model, X[:1], [(150, "A"), (151, "T")])  # (n, L, C): output(alt) − output(ref)

Sequences are in-memory one-hot batches (b, L, 4) (numpy or torch; an (L, 4)
array is a batch of one). Targets are the CLI's (`sum[:CHANNEL]`,
`position:P[:CHANNEL]`, `loglik`; default: the model's own), with positions in
the coordinates of `region_starts` (default 0 for every row, so `position:P`
is the P-th base, 1-based); `target_window=(start, end)` (0-based half-open,
same coordinates) restricts sum/loglik targets. `engine="pgf"` is the tiled,
memory-bounded engine (`tile` positions at a time); `"autograd"` the plain
reference. Everything is computed in the model's dtype on its device.
The CLI computes with the same functions (pgf.interpret, pgf.workflows).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pgf.engine import GradientResult, get_engine
from pgf.interpret import ISMResult, PathResult
from pgf.interpret import expected_gradients as _expected_gradients
from pgf.interpret import integrated_gradients as _integrated_gradients
from pgf.interpret import saturation_mutagenesis as _saturation_mutagenesis
from pgf.interpret.common import as_batch, fixed_readout
from pgf.interpret.rc import rc_gradient
from pgf.models.base import SequenceModel
from pgf.models.registry import LoadedModel
from pgf.models.registry import load_model as _load_model
from pgf.models.targets import Target, parse_target
from pgf.workflows.effect import output_function

__all__ = ["effects", "expected_gradients", "gradients", "integrated_gradients", "ism", "load_model"]


def load_model(spec: str = "builtin", device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               vocab: str | None = None) -> SequenceModel:
    """The model `spec` ('builtin', 'random-test', a checkpoint directory or a Hugging Face Hub id
    'ORG/NAME[@REVISION]') in eval mode; its identity (id, checksum, ...) is `model.pgf_info`."""
    loaded = _load_model(spec, device=device, dtype=dtype, vocab=vocab)
    loaded.model.pgf_info = loaded.info
    return loaded.model


def _model(model) -> SequenceModel:
    return model.model if isinstance(model, LoadedModel) else model


def _setup(model, X, target, target_window, region_starts):
    model = _model(model)
    x = as_batch(X, model)
    parsed = target if isinstance(target, Target) else parse_target(target, model)
    if target_window is not None:
        parsed = parsed.with_window(parsed.window[0] if parsed.window else "", int(target_window[0]), int(target_window[1]))
    starts = [0] * x.shape[0] if region_starts is None else [int(s) for s in region_starts]
    if len(starts) != x.shape[0]:
        raise ValueError(f"region_starts has {len(starts)} entries for a batch of {x.shape[0]}")
    return model, x, parsed, starts


def gradients(model, X, target: str | Target | None = None, *, target_window: tuple[int, int] | None = None,
              region_starts: Sequence[int] | None = None, engine: str = "pgf", tile: int | None = None,
              offload: bool | None = None, rc_average: bool = False) -> GradientResult:
    """d f / d onehot of X (b, L, 4): `.gradient` (b, L, 4) and `.target_value` f (b,).

    `rc_average`: the mean of this and the reverse-complement strand's gradient
    (target mirrored), mapped back; redundant for RC-equivariant models."""
    model, x, parsed, starts = _setup(model, X, target, target_window, region_starts)
    sweep = get_engine(engine, tile, offload)
    if rc_average:
        return rc_gradient(sweep, model, x, parsed, starts)
    return sweep.gradient(model, x, fixed_readout(parsed, starts, x))


def integrated_gradients(model, X, target: str | Target | None = None, *, baseline: str | torch.Tensor = "zeros",
                         n_baselines: int = 1, steps: int = 32, rule: str = "gauss-legendre", seed: int = 0,
                         target_window: tuple[int, int] | None = None, region_starts: Sequence[int] | None = None,
                         engine: str = "pgf", tile: int | None = None, rc_average: bool = False,
                         batch_rows: int | None = None) -> PathResult:
    """Integrated gradients of X (b, L, 4) from `n_baselines` baselines ('zeros', 'uniform',
    'shuffle' = dinucleotide shuffles of X, seeded; or a (b, K, L, 4) tensor) with `steps`
    Gauss–Legendre nodes (`rule='midpoint'`: the midpoint Riemann sum).

    Returns `.attributions` (b, L, 4), `.path_gradient` (b, L, 4), `.target_value` f(X) (b,),
    `.baseline_target_value` (b,) (mean over baselines), `.completeness_error` (b,)."""
    model, x, parsed, starts = _setup(model, X, target, target_window, region_starts)
    return _integrated_gradients(get_engine(engine, tile), model, x, parsed, starts, baseline=baseline,
                                 n_baselines=n_baselines, steps=steps, seed=seed, rule=rule,
                                 rc_average=rc_average, batch_rows=batch_rows)


def expected_gradients(model, X, target: str | Target | None = None, *, baseline: str = "shuffle", samples: int = 32,
                       seed: int = 0, target_window: tuple[int, int] | None = None,
                       region_starts: Sequence[int] | None = None, engine: str = "pgf", tile: int | None = None,
                       rc_average: bool = False, batch_rows: int | None = None) -> PathResult:
    """Expected gradients of X (b, L, 4): `samples` random (baseline, α ~ U(0, 1)) points per
    row, reproducible by `seed`; fields as for `integrated_gradients`."""
    model, x, parsed, starts = _setup(model, X, target, target_window, region_starts)
    return _expected_gradients(get_engine(engine, tile), model, x, parsed, starts, baseline=baseline,
                               samples=samples, seed=seed, rc_average=rc_average, batch_rows=batch_rows)


def ism(model, X, target: str | Target | None = None, *, window: tuple[int, int] | None = None,
        max_positions: int | None = None, force: bool = False, target_window: tuple[int, int] | None = None,
        region_starts: Sequence[int] | None = None, engine: str = "pgf", tile: int | None = None,
        rc_average: bool = False, compare_taylor: bool = True, batch_rows: int | None = None) -> ISMResult:
    """Exact saturation mutagenesis of X (b, L, 4) over sequence positions [start, end) of
    `window` (default: all; over 1,000 positions only with `force`).

    Returns `.ism` (b, L, 4) = f(mutant) − f(X) (0 at the observed base, NaN outside the
    window and at N), `.hypothetical` (ism minus its mean over bases), `.score` (b, L),
    `.target_value` (b,), `.taylor_correlation` (b,) (Pearson r of g[alt] − g[ref] with ism)."""
    model, x, parsed, starts = _setup(model, X, target, target_window, region_starts)
    return _saturation_mutagenesis(get_engine(engine, tile), model, x, parsed, starts, window=window,
                                   max_positions=max_positions, force=force, rc_average=rc_average,
                                   compare_taylor=compare_taylor, batch_rows=batch_rows)


def effects(model, X, variants: Sequence[tuple[int, int | str]], *, mode: str = "exact", tile: int | None = None,
            batch_size: int = 32) -> torch.Tensor:
    """Effects of SNVs on every output position of one sequence X (L, 4) or (1, L, 4), as
    `pgf effect`: (n, L, C) for variants [(position 0-based, alt base 'A'/'C'/'G'/'T' or
    0-3), ...]. `mode='exact'`: output(alt) − output(ref) (forward sweeps); `'linear'`:
    J·(onehot(alt) − onehot(ref)) (tangent sweeps). Language models track log p(reference
    base) per position, track models their default output's channels."""
    model = _model(model)
    x = as_batch(X, model)
    if x.shape[0] != 1:
        raise ValueError("effects takes one sequence (L, 4) or (1, L, 4)")
    if mode not in ("exact", "linear"):
        raise ValueError("mode is 'exact' or 'linear'")
    readout, _, _ = output_function(model)
    directions = torch.zeros(len(variants), *x.shape[1:], dtype=x.dtype, device=x.device)
    for n, (position, alt) in enumerate(variants):
        alt = "ACGT".index(alt.upper()) if isinstance(alt, str) else int(alt)
        directions[n, position] = -x[0, position]
        directions[n, position, alt] += 1.0
    sweep = get_engine("pgf", tile)
    out = []
    for first in range(0, len(variants), batch_size):
        chunk = directions[first : first + batch_size]
        if mode == "linear":
            out.append(sweep.tangent(model, x, chunk.unsqueeze(1), readout)[1][:, 0])
        else:
            reference = sweep.forward(model, x, readout)
            values = sweep.forward(model, x + chunk, readout, reference=x.expand(len(chunk), -1, -1))
            out.append(values - reference)
    return torch.cat(out) if out else directions.new_zeros(0)
