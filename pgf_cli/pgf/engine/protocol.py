"""The tile-function protocol every engine sweeps: Ψ(state, tile) -> (out, state).

A model the engine can sweep is

    x_0 = embed(onehot)                      pointwise in position
    x_{i+1} = combine(skip(x_i), [scan_k(x_i) for each scan k of layer i])
    outputs = head(x_n)                      pointwise in position

where each `Scan` runs a `Mixer` causally (tiles left to right) or
anti-causally (the same mixer on the flipped sequence, tiles right to left)
between pointwise `prepare` and `place` maps. Positions interact only through
the scans' carried states, which is what lets a layer be computed,
differentiated forward (tangent) or backward (adjoint) tile by tile. The
whole-sequence forward of every model is this composition too (`forward`),
so the models' oracle tests also test the decomposition.

What is read from the outputs is a `Readout`: a per-position function of the
head's outputs that can always be cut into row groups. The forward and tangent
sweeps return it per position; the adjoint differentiates its sum over
positions and channels (a target).

Every capability the engine uses is declared here, with its default: nothing
is discovered at run time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

import torch

Pointwise = Callable[[torch.Tensor], torch.Tensor]
ScanState = tuple[torch.Tensor, ...]  # what a mixer carries from one tile to the next
# the kernels a mixer's tile runs: "reference", "cpu", "triton" (None: "auto")
Backend = str | None


class Readout(ABC):
    """readout(outputs of a tile, whole one-hot input (b, L, 4), offset of the tile) -> (b, T) or (b, T, C).

    Every readout can give the readout of rows [start, end) of its batch (`rows`), so an
    engine may sweep a large batch a few rows at a time."""

    @abstractmethod
    def __call__(self, outputs: dict[str, torch.Tensor], onehot: torch.Tensor, offset: int) -> torch.Tensor:
        """The readout values of one tile."""

    @abstractmethod
    def rows(self, start: int, end: int) -> Readout:
        """The readout of rows [start, end) of the batch."""


@dataclass(frozen=True)
class PositionReadout(Readout):
    """A readout that treats every row alike (the same function of each row's outputs)."""

    function: Callable[[dict[str, torch.Tensor], torch.Tensor, int], torch.Tensor]

    def __call__(self, outputs: dict[str, torch.Tensor], onehot: torch.Tensor, offset: int) -> torch.Tensor:
        return self.function(outputs, onehot, offset)

    def rows(self, start: int, end: int) -> PositionReadout:
        return self


class Twin(NamedTuple):
    """What a scan's tied twin (`Scan.twin`) kept of the same tile: its mixer's residual, and
    whether the twin read the tile the other way over length (one of the two is anti-causal);
    in the reverse pass also the twin's `ProjectionCotangent` of the tile, when it deferred it."""

    residual: object
    flipped: bool
    deferred: torch.Tensor | None = None

    def oriented(self, t: torch.Tensor) -> torch.Tensor:
        """A tensor (b, T, ...) of the twin's tile, in this scan's orientation over length."""
        return t.flip(1) if self.flipped else t

    def deferred_cotangent(self) -> torch.Tensor | None:
        """The twin's deferred projection cotangent in this scan's orientation, or None."""
        return None if self.deferred is None else self.oriented(self.deferred)


class ProjectionCotangent(NamedTuple):
    """A mixer's pull-back of a tile stopped before its input projection (`tile_vjp(defer=True)`):
    the cotangent of the projection's output (b, T, width), which the scan's twin adds to its own
    before pulling both back through the shared projection in one product."""

    value: torch.Tensor


@runtime_checkable
class Mixer(Protocol):
    """A causal sequence mixer as a tile function (a Mamba mixer, say): what a `Scan` calls.

    Subclass `MixerDefaults` for the optional methods' defaults."""

    def zero_state(self, batch: int, like: torch.Tensor) -> ScanState:
        """The state before the first position."""

    def forward_tile(self, u: torch.Tensor, state: ScanState, backend: Backend = None) -> tuple[torch.Tensor, ScanState]:
        """One tile (b, T, w) from the carried state -> (out (b, T, w), state after the tile)."""

    def forward_tile_saving(self, u: torch.Tensor, state: ScanState, backend: Backend = None,
                            twin: Twin | None = None) -> tuple[torch.Tensor, ScanState, object | None]:
        """`forward_tile` without autograd, and a residual for `tile_vjp` (None: the adjoint
        recomputes the tile under autograd instead). A residual may also keep what only saves
        recomputation (a projection's output); its `slim()` then returns it without that part,
        which the adjoint asks for when memory is short (`slim_residual`). `twin`: what a mixer
        with the same input projection kept of the same input; a mixer may reuse it (and keep a
        residual that refers to it rather than a copy) or ignore it."""

    def tile_vjp(self, u: torch.Tensor, state: ScanState, residual: object, out_bar: torch.Tensor,
                 state_bar: ScanState | None, backend: Backend = None, twin: Twin | None = None,
                 defer: bool = False) -> tuple[torch.Tensor | ProjectionCotangent, ScanState]:
        """(u_bar, state_bar before the tile) from a residual of `forward_tile_saving`, given the
        same `twin` that call had (with the twin's deferred cotangent, if any, added in). `defer`
        (asked only of a scan's twin): the mixer may return a `ProjectionCotangent` in u_bar's place."""


class MixerDefaults:
    """The defaults of a `Mixer`'s optional methods: no residual, so never a `tile_vjp`."""

    def forward_tile_saving(self, u: torch.Tensor, state: ScanState, backend: Backend = None,
                            twin: Twin | None = None) -> tuple[torch.Tensor, ScanState, object | None]:
        with torch.no_grad():
            out, new_state = self.forward_tile(u, state, backend)
        return out, new_state, None

    def tile_vjp(self, u: torch.Tensor, state: ScanState, residual: object, out_bar: torch.Tensor,
                 state_bar: ScanState | None, backend: Backend = None, twin: Twin | None = None,
                 defer: bool = False) -> tuple[torch.Tensor, ScanState]:
        raise NotImplementedError(f"{type(self).__name__} keeps no residual; the adjoint recomputes its tiles")


def slim_residual(residual: object) -> object:
    """The residual without what it keeps only to save recomputation (its `slim()`), else itself."""
    slim = getattr(residual, "slim", None)
    return residual if slim is None else slim()


def identity(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass
class Scan:
    """One directional scan of a layer.

    contribution = place(flip?(mixer(flip?(prepare(x))))), the flips over length
    happening for anti-causal (`reverse`) scans. With `channels` (lo, hi) the contribution
    fills only those channels of the layer's output (the others are zero): sweeps add it into
    that slice instead of adding a zero-padded copy (`widened` gives the padded form).
    `twin`: the index in its layer of an earlier scan with the same `prepare` whose mixer
    shares this one's input projection (tied weights, as a weight-tied BiMamba's two
    directions): the adjoint hands that scan's residual of each tile to this one's mixer
    (`Twin`), which can reuse the projection instead of computing and keeping it again.
    """

    mixer: Mixer
    reverse: bool = False
    prepare: Pointwise = identity
    place: Pointwise = identity
    channels: tuple[int, int] | None = None
    twin: int | None = None

    def widened(self, contribution: torch.Tensor, width: int) -> torch.Tensor:
        """The contribution over all `width` channels of the layer's output (zeros outside `channels`)."""
        if self.channels is None:
            return contribution
        lo, hi = self.channels
        return torch.nn.functional.pad(contribution, (lo, width - hi))

    def narrowed(self, cotangent: torch.Tensor) -> torch.Tensor:
        """The part of a cotangent of the layer's output (..., width) that this scan's contribution meets."""
        return cotangent if self.channels is None else cotangent[..., self.channels[0]:self.channels[1]]

    def zero_state(self, batch: int, like: torch.Tensor) -> ScanState:
        return tuple(self.mixer.zero_state(batch, like))

    def _mixer_input(self, x_tile: torch.Tensor) -> torch.Tensor:
        u = self.prepare(x_tile)
        return u.flip(1) if self.reverse else u

    def _placed(self, out: torch.Tensor) -> torch.Tensor:
        return self.place(out.flip(1) if self.reverse else out)

    def tile(self, x_tile: torch.Tensor, state: ScanState, backend: Backend = None) -> tuple[torch.Tensor, ScanState]:
        """Contribution of one tile (genome order) from the state carried in this scan's direction."""
        out, new_state = self.mixer.forward_tile(self._mixer_input(x_tile), state, backend)
        return self._placed(out), tuple(new_state)

    def whole(self, x: torch.Tensor, backend: Backend = None) -> torch.Tensor:
        """Contribution over the whole sequence, from the zero state."""
        return self.tile(x, self.zero_state(x.shape[0], x), backend)[0]

    def tile_saving(self, x_tile: torch.Tensor, state: ScanState, backend: Backend = None,
                    twin: Twin | None = None) -> tuple[torch.Tensor, ScanState, object | None]:
        """`tile`, and the mixer's residual for `tile_vjp` (None when its mixer keeps none);
        `twin`: the `twin` scan's residual of the same tile."""
        out, new_state, residual = self.mixer.forward_tile_saving(self._mixer_input(x_tile), state, backend,
                                                                  **_twin_argument(twin))
        return self._placed(out), tuple(new_state), residual

    def tile_vjp(self, x_tile: torch.Tensor, state: ScanState, residual: object, out_bar: torch.Tensor,
                 state_bar: ScanState | None, backend: Backend = None, twin: Twin | None = None,
                 defer: bool = False) -> tuple[torch.Tensor | ProjectionCotangent, ScanState]:
        """(x_bar, state_bar before the tile) through the mixer's own VJP, from a residual of
        `tile_saving` (and the same `twin`). `place` must be linear (pgf's are: identity, flips over
        channels) so that its pull-back needs no value; the mixer's output must have its input's shape.
        `defer`: see `Mixer.tile_vjp`; a `ProjectionCotangent` is returned as the mixer gave it
        (in its orientation), for the later scan whose twin this one is."""
        with torch.enable_grad():
            x = x_tile.detach().requires_grad_(True)
            u = self.prepare(x)
        u_in = u.flip(1) if self.reverse else u
        mixer_bar = out_bar
        if self.place is not identity:
            probe = torch.zeros_like(u_in, requires_grad=True)
            with torch.enable_grad():
                (mixer_bar,) = torch.autograd.grad(self.place(probe), probe, out_bar)
        if self.reverse:
            mixer_bar = mixer_bar.flip(1)
        u_bar, state_bar_before = self.mixer.tile_vjp(u_in.detach(), state, residual, mixer_bar, state_bar, backend,
                                                      **_twin_argument(twin), **({"defer": True} if defer else {}))
        if isinstance(u_bar, ProjectionCotangent):
            return u_bar, tuple(state_bar_before)
        if self.reverse:
            u_bar = u_bar.flip(1)
        if u is x:
            return u_bar, tuple(state_bar_before)
        (x_bar,) = torch.autograd.grad(u, x, u_bar)
        return x_bar, tuple(state_bar_before)


def _twin_argument(twin: Twin | None) -> dict[str, Twin]:
    """The mixer call's `twin` keyword, only when there is one (mixers without twins need not take it)."""
    return {} if twin is None else {"twin": twin}


@dataclass(frozen=True)
class Combine:
    """How a layer joins its skip path and its scans' contributions: skip + the sum of the
    contributions (no `pairs`), or skip + the products of the listed scan pairs + the unpaired
    contributions (e.g. (forward, reverse) pairs of a bidirectional mixer that multiplies)."""

    pairs: tuple[tuple[int, int], ...] = ()

    @property
    def additive(self) -> bool:
        return not self.pairs

    def __call__(self, skip: torch.Tensor, contributions: list[torch.Tensor]) -> torch.Tensor:
        out = skip
        if self.additive:
            for contribution in contributions:
                out = out + contribution
            return out
        for a, b in self.pairs:
            out = out + contributions[a] * contributions[b]
        paired = {i for pair in self.pairs for i in pair}
        for index, contribution in enumerate(contributions):
            if index not in paired:
                out = out + contribution
        return out


SUM = Combine()


@dataclass
class TiledLayer:
    """x -> combine(skip(x), the scans' contributions)."""

    scans: list[Scan]
    skip: Pointwise = identity
    join: Combine = SUM

    @property
    def additive(self) -> bool:
        return self.join.additive

    def combine(self, x: torch.Tensor, contributions: list[torch.Tensor]) -> torch.Tensor:
        """Pointwise join of the skip path and the scans' contributions (each widened to the output's channels)."""
        skip = self.skip(x)
        return self.join(skip, [scan.widened(c, skip.shape[-1]) for scan, c in zip(self.scans, contributions)])

    def whole(self, x: torch.Tensor, backend: Backend = None) -> torch.Tensor:
        return self.combine(x, [scan.whole(x, backend) for scan in self.scans])


class SweepModel(Protocol):
    """What an engine needs of a model: pointwise embed and head around tiled layers."""

    def embed(self, onehot: torch.Tensor) -> torch.Tensor:
        """One-hot (b, L, 4) -> the stream entering the first layer (b, L, width)."""

    def tiled_layers(self) -> list[TiledLayer]:
        """The layers as directional scans between pointwise maps, first to last."""

    def head(self, stream: torch.Tensor) -> dict[str, torch.Tensor]:
        """The last layer's output stream -> named outputs (b, L, channels)."""

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...


def is_causal(layers: list[TiledLayer]) -> bool:
    """True when every scan runs left to right (the model can stream tile by tile through all layers)."""
    return all(not scan.reverse for layer in layers for scan in layer.scans)


def whole_forward(model: SweepModel, onehot: torch.Tensor, backend: Backend = None) -> dict[str, torch.Tensor]:
    """The model's outputs computed layer by layer over the whole sequence (no tiles)."""
    stream = model.embed(onehot)
    for layer in model.tiled_layers():
        stream = layer.whole(stream, backend)
    return model.head(stream)
