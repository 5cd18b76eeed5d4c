"""Models as sweeps: pointwise maps around directional selective scans.

Every model pgf runs is

    x_0 = embed(onehot)                      pointwise in position
    x_{i+1} = layer_i(x_0 ... ) = combine(skip(x_i), [scan_k(x_i) for each scan k])
    outputs = head(x_n)                      pointwise in position

where each `Scan` is a Mamba mixer run causally (tiles left to right) or
anti-causally (the same mixer on the flipped sequence, tiles right to left),
between pointwise `prepare` and `place` maps. Positions interact only through
the scans' carried states, which is what the engines exploit: a layer can be
computed, differentiated forward (tangent) or backward (adjoint) tile by tile.
The whole-sequence forward of every model is this composition too, so the
oracle tests of the models also test the decomposition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from pgf.models.mamba import MambaMixer, MixerState

Pointwise = Callable[[torch.Tensor], torch.Tensor]
ScanState = tuple[torch.Tensor, torch.Tensor]  # (conv tail, scan state)


def identity(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass
class Scan:
    """One directional selective scan of a layer.

    contribution = place(flip?(mixer(flip?(prepare(x))))) where the flips over
    length happen for anti-causal (`reverse`) scans.
    """

    mixer: MambaMixer
    reverse: bool = False
    prepare: Pointwise = identity
    place: Pointwise = identity

    def zero_state(self, batch: int, like: torch.Tensor) -> ScanState:
        state = self.mixer.zero_state(batch, like)
        return state.conv, state.ssm

    def tile(self, x_tile: torch.Tensor, state: ScanState) -> tuple[torch.Tensor, ScanState]:
        """Contribution of one tile (genome order) from the state carried in this scan's direction."""
        u = self.prepare(x_tile)
        if self.reverse:
            u = u.flip(1)
        out, new_state = self.mixer.forward_tile(u, MixerState(*state))
        if self.reverse:
            out = out.flip(1)
        return self.place(out), (new_state.conv, new_state.ssm)

    def whole(self, x: torch.Tensor) -> torch.Tensor:
        """Contribution over the whole sequence, from the zero state."""
        return self.tile(x, self.zero_state(x.shape[0], x))[0]


@dataclass
class TiledLayer:
    """x -> skip(x) + sum of scan contributions ("add"), or + sum of products of
    consecutive scan pairs ("ew_multiply": (forward, reverse) pairs)."""

    scans: list[Scan]
    skip: Pointwise = identity
    strategy: str = "add"
    pairs: list[tuple[int, int]] = field(default_factory=list)

    def combine(self, x: torch.Tensor, contributions: list[torch.Tensor]) -> torch.Tensor:
        """Pointwise join of the skip path and the scans' contributions."""
        out = self.skip(x)
        if self.strategy == "add":
            for contribution in contributions:
                out = out + contribution
        else:
            for a, b in self.pairs:
                out = out + contributions[a] * contributions[b]
            paired = {i for pair in self.pairs for i in pair}
            for index, contribution in enumerate(contributions):
                if index not in paired:
                    out = out + contribution
        return out

    def whole(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(x, [scan.whole(x) for scan in self.scans])


def bimamba_scans(mixer, prepare: Pointwise, place: Pointwise = identity) -> list[Scan]:
    """The causal forward scan, and the anti-causal reverse scan when the mixer has one."""
    scans = [Scan(mixer.mamba_fwd, reverse=False, prepare=prepare, place=place)]
    if mixer.mamba_rev is not None:
        scans.append(Scan(mixer.mamba_rev, reverse=True, prepare=prepare, place=place))
    return scans


def pair_strategy(mixer, n_scans: int) -> tuple[str, list[tuple[int, int]]]:
    """How a layer built from BiMamba scans (in (fwd, rev) order per group) combines them."""
    if mixer.mamba_rev is None or mixer.strategy == "add":
        return "add", []
    return "ew_multiply", [(i, i + 1) for i in range(0, n_scans, 2)]
