"""Exact in-silico saturation mutagenesis (ISM) from forward sweeps.

For every position l of a window and every base a other than the observed one:

    ism[l, a] = f(x with base a at l) − f(x)

f being the target (the readout summed over its positions and channels), the
same definition as `pgf effect --mode exact` (output(alt) − output(ref))
summed over the target; for `loglik` targets the bases scored are the
*reference* bases (the selection is not mutated). ism[l, ref] = 0; positions
outside the window and without an observed base (N) are NaN.

Conventions: `hypothetical` = ism − its mean over the 4 bases at each position
(tangermeme's post-processing); the per-base score is the hypothetical value
at the observed base, = −(Σ over the 3 substitutions of ism) / 4: positive
where mutating the base lowers f.

Cost: 3 forward sweeps of the whole sequence per window position, batched
(`batch_rows` mutants per sweep). Every mutant runs the full sweep: for
causal models the unchanged prefix before the mutation could be reused from
the reference sweep's states; that is not done. Windows over
`DEFAULT_MAX_ISM_POSITIONS` positions are refused unless `force`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pgf.engine import Engine, Progress
from pgf.interpret.common import default_rows, fixed_readout, target_values
from pgf.interpret.rc import mirrored_starts, mirrored_window, reverse_complement
from pgf.models.targets import Target

DEFAULT_MAX_ISM_POSITIONS = 1000


@dataclass
class ISMResult:
    ism: torch.Tensor  # (b, L, 4): f(mutant) − f(x); 0 at the observed base, NaN outside the window / at N
    hypothetical: torch.Tensor  # (b, L, 4): ism − mean over the 4 bases
    target_value: torch.Tensor  # (b,): f(x)
    window: tuple[int, int]  # [start, end) within the sequence
    onehot: torch.Tensor  # (b, L, 4): the sequences mutated
    taylor_correlation: torch.Tensor | None = None  # (b,): Pearson r of g[alt] − g[ref] with ism
    gradient: torch.Tensor | None = None  # (b, L, 4): d f / d onehot at x (computed for the Taylor comparison)

    @property
    def score(self) -> torch.Tensor:
        """(b, L): hypothetical ISM at the observed base (NaN outside the window / at N)."""
        return (self.hypothetical * self.onehot).sum(-1)


def check_window(window: tuple[int, int] | None, length: int, max_positions: int | None, force: bool) -> tuple[int, int]:
    start, end = (0, length) if window is None else (int(window[0]), int(window[1]))
    if not 0 <= start < end <= length:
        raise ValueError(f"ISM window [{start}, {end}) does not lie inside a sequence of {length} positions")
    limit = DEFAULT_MAX_ISM_POSITIONS if max_positions is None else max_positions
    if end - start > limit and not force:
        raise ValueError(
            f"ISM window of {end - start:,} positions needs {3 * (end - start):,} forward sweeps per sequence; "
            f"the limit is {limit:,} positions (force it, or use a smaller window)"
        )
    return start, end


def _ism_one_strand(engine, model, x, target, starts, window, batch_rows, progress) -> tuple[torch.Tensor, torch.Tensor]:
    b, L, _ = x.shape
    start, end = window
    observed = x.sum(-1) > 0
    reference = x.argmax(-1)
    rows = batch_rows or default_rows(L)
    fx = target_values(engine, model, x, x, target, list(starts), rows, progress)
    mutants = [(i, l, a) for i in range(b) for l in range(start, end) if observed[i, l] for a in range(4) if a != reference[i, l]]
    ism = torch.full_like(x, float("nan"))
    ism[:, start:end][observed[:, start:end]] = 0.0
    for first in range(0, len(mutants), rows):
        chunk = mutants[first : first + rows]
        index = torch.tensor([i for i, _, _ in chunk], device=x.device)
        inputs = x[index].clone()
        for r, (_, l, a) in enumerate(chunk):
            inputs[r, l] = 0.0
            inputs[r, l, a] = 1.0
        values = target_values(engine, model, inputs, x[index], target, [starts[i] for i, _, _ in chunk], rows, progress)
        for r, (i, l, a) in enumerate(chunk):
            ism[i, l, a] = values[r] - fx[i]
    return ism, fx


def saturation_mutagenesis(engine: Engine, model, x: torch.Tensor, target: Target, starts: Sequence[int],
                           window: tuple[int, int] | None = None, max_positions: int | None = None, force: bool = False,
                           rc_average: bool = False, compare_taylor: bool = True, batch_rows: int | None = None,
                           progress: Progress | None = None) -> ISMResult:
    """ISM of x (b, L, 4) over positions [start, end) of `window` (default: the whole sequence)."""
    L = x.shape[1]
    window = check_window(window, L, max_positions, force)
    ism, fx = _ism_one_strand(engine, model, x, target, starts, window, batch_rows, progress)
    if rc_average:
        rc = reverse_complement(x)
        back, f_rc = _ism_one_strand(engine, model, rc, target, mirrored_starts(target, starts, L),
                                     mirrored_window(window, L), batch_rows, progress)
        ism, fx = 0.5 * (ism + reverse_complement(back)), 0.5 * (fx + f_rc)
    hypothetical = ism - ism.mean(dim=-1, keepdim=True)
    result = ISMResult(ism, hypothetical, fx, window, x)
    if compare_taylor:
        if rc_average:
            from pgf.interpret.rc import rc_gradient

            gradient = rc_gradient(engine, model, x, target, starts, progress).gradient
        else:
            gradient = engine.gradient(model, x, fixed_readout(target, list(starts), x), progress).gradient
        result.taylor_correlation = taylor_ism_correlation(gradient, x, ism)
        result.gradient = gradient
    return result


def taylor_ism_correlation(gradient: torch.Tensor, x: torch.Tensor, ism: torch.Tensor) -> torch.Tensor:
    """(b,) Pearson correlation of first-order ISM g[alt] − g[ref] with exact ISM over every
    substitution (alternative base at an observed position) inside the window."""
    taylor = gradient - (gradient * x).sum(-1, keepdim=True)
    out = []
    for i in range(x.shape[0]):
        keep = ~ism[i].isnan() & (x[i] == 0) & (x[i].sum(-1, keepdim=True) > 0)
        a, e = taylor[i][keep].double(), ism[i][keep].double()
        if a.numel() < 2:
            out.append(float("nan"))
            continue
        a, e = a - a.mean(), e - e.mean()
        out.append(float((a * e).sum() / (a.norm() * e.norm())))
    return torch.tensor(out, dtype=torch.float64)
