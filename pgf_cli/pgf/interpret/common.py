"""What the interpretation methods share: readouts with a fixed base selection, row chunks,
target values from forward sweeps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pgf.engine import Engine, Progress, Readout
from pgf.models.targets import Target

ROW_POSITIONS = 2**18  # default chunk: as many rows as fit this many positions (at most 64)


def default_rows(length: int) -> int:
    """Rows per engine call for sequences of `length` (the attribute workflow's batch rule)."""
    return max(1, min(64, ROW_POSITIONS // max(length, 1)))


@dataclass(frozen=True)
class FixedReadout(Readout):
    """The target's readout for rows starting at `starts`, reading `selection` (rows, L, 4)
    instead of the engine's input to choose observed bases (only `loglik` reads it).

    So f is one function of the input along a path or over mutants: log p of the
    *original* sequence's bases, whatever the input is (as `pgf effect --mode exact`).
    Its rows are cut with their starts and selections, so an engine may sweep them in groups."""

    target: Target
    starts: tuple[int, ...]
    selection: torch.Tensor

    def __call__(self, outputs: dict[str, torch.Tensor], onehot: torch.Tensor, offset: int) -> torch.Tensor:
        return self.target.readout(self.starts)(outputs, self.selection, offset)

    def rows(self, start: int, end: int) -> FixedReadout:
        return FixedReadout(self.target, self.starts[start:end], self.selection[start:end])


def fixed_readout(target: Target, starts: Sequence[int], selection: torch.Tensor) -> FixedReadout:
    """`FixedReadout` of `target` for rows starting at `starts`, reading `selection`."""
    return FixedReadout(target, tuple(int(s) for s in starts), selection)


def total(values: torch.Tensor) -> torch.Tensor:
    """A readout's values (rows, T[, C]) summed to f per row."""
    return values.flatten(1).sum(dim=1)


def target_values(engine: Engine, model, inputs: torch.Tensor, selection: torch.Tensor, target: Target,
                  starts: Sequence[int], rows: int, progress: Progress | None = None) -> torch.Tensor:
    """f of every row of `inputs` (n, L, 4), `selection` and `starts` per row, `rows` per forward sweep."""
    out = []
    for first in range(0, inputs.shape[0], rows):
        chunk = slice(first, first + rows)
        readout = fixed_readout(target, starts[chunk], selection[chunk])
        out.append(total(engine.forward(model, inputs[chunk], readout, reference=selection[chunk], progress=progress)))
    return torch.cat(out) if out else inputs.new_zeros(0)


def as_batch(onehot, model) -> torch.Tensor:
    """A one-hot batch (b, L, 4) as a tensor of the model's dtype and device (a single (L, 4) gains b = 1)."""
    parameter = next(model.parameters())
    x = torch.as_tensor(onehot)
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.ndim != 3 or x.shape[-1] != 4:
        raise ValueError(f"expected a one-hot batch (b, L, 4), got shape {tuple(x.shape)}")
    return x.to(device=parameter.device, dtype=parameter.dtype)
