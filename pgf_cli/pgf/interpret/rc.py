"""Reverse-complement averaging: attribute the reverse complement with the target mirrored,
map the attribution back and average it with the forward strand's.

With columns A C G T, the complement swaps A<->T and C<->G, i.e. reverses the
columns; the reverse complement of a one-hot (b, L, 4) is a flip of length and
columns, and so is the map of an attribution of the reverse strand back onto
the forward strand.

The target is mirrored within the region: a position i (0-based in the region)
becomes L-1-i, a target window [a, b) becomes [L-b, L-a). Targets are written
in genome coordinates with a region start per row, so the mirror is done by
giving the reverse strand's rows a shifted ("virtual") region start.

For RC-equivariant models (Caduceus ps) the reverse strand gives the same
result up to rounding (redundant; tested); post-hoc models (Caduceus ph, track
models) differ, and the average is the "post-hoc conjoining" of the two strands.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pgf.engine import Engine, GradientResult, Progress
from pgf.interpret.common import fixed_readout
from pgf.models.targets import Target


def reverse_complement(onehot: torch.Tensor) -> torch.Tensor:
    """Reverse complement of (..., L, 4) one-hot (or an attribution of it): flip length and columns."""
    return onehot.flip(-2, -1)


def mirrored_starts(target: Target, starts: Sequence[int], length: int) -> list[int]:
    """Region starts under which `target` reads the mirrored position / window of each row."""
    if target.kind == "position":
        return [2 * target.position - s - length + 1 for s in starts]
    if target.window is not None:
        _, w_start, w_end = target.window
        return [w_start + w_end - s - length for s in starts]
    return list(starts)


def mirrored_window(window: tuple[int, int] | None, length: int) -> tuple[int, int] | None:
    """A window [a, b) of positions in a sequence of `length`, mirrored: [L-b, L-a)."""
    return None if window is None else (length - window[1], length - window[0])


def rc_gradient(engine: Engine, model, onehot: torch.Tensor, target: Target, starts: Sequence[int],
                progress: Progress | None = None) -> GradientResult:
    """Mean of the gradient of f at x and, mapped back, of the mirrored target at RC(x); f averaged too."""
    selection = onehot
    forward = engine.gradient(model, onehot, fixed_readout(target, starts, selection), progress)
    rc = reverse_complement(onehot)
    backward = engine.gradient(model, rc, fixed_readout(target, mirrored_starts(target, starts, onehot.shape[1]), rc), progress)
    gradient = 0.5 * (forward.gradient + reverse_complement(backward.gradient))
    return GradientResult(gradient=gradient, target_value=0.5 * (forward.target_value + backward.target_value))
