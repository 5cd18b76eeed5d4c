"""One way to stream a model over tiles, for plain values and for tangents.

The forward sweep, the tangent sweep and the adjoint's forward pass all walk
the model the same way; only what flows through it differs. A `Mode` says
how: `PRIMAL` carries tensors and calls each tile function as is; `TangentMode`
carries `Dual`s (a primal and k tangents) and calls each tile function under
`torch.func.jvp`, vmapped over the k directions (one primal computation shared
by all of them). Two walks are written once, generic in the mode:

- `stream_causal`: models whose scans all run left to right stream each tile
  through every layer, carrying each scan's state (memory O(tile) besides the
  outputs);
- `sweep_layers`: bidirectional models are swept layer after layer
  (`layer_sweep`), each scan over all tiles in its own direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch.func import jvp, vmap
from torch.utils._pytree import tree_map

from pgf.engine.protocol import Backend, Readout, Scan, ScanState, SweepModel, TiledLayer
from pgf.engine.tile_primitives import ProgressCounter, TileOutput, Tiles, sweep_order

# visit(scan number, tile number in sweep order, tile span, state the tile starts from)
Visit = Callable[[int, int, tuple[int, int], ScanState], None]
# a scan's tile function: (x tile, state) -> (contribution, state after the tile)
TileFunction = Callable[[torch.Tensor, ScanState], tuple[torch.Tensor, ScanState]]


@dataclass
class Dual:
    """A primal value (b, L, ...) and its tangents along k directions (k, b, L, ...)."""

    primal: torch.Tensor
    tangent: torch.Tensor


class _Outputs:
    """A dual whole-length output filled tile by tile."""

    def __init__(self, length: int):
        self.primal, self.tangent = TileOutput(length), TileOutput(length, lead=2)

    def write(self, start: int, end: int, tile: Dual) -> None:
        self.primal.write(start, end, tile.primal)
        self.tangent.write(start, end, tile.tangent)

    def add(self, start: int, end: int, tile: Dual, channels: tuple[int, int] | None = None) -> None:
        self.primal.add(start, end, tile.primal, channels)
        self.tangent.add(start, end, tile.tangent, channels)

    @property
    def value(self) -> Dual:
        return Dual(self.primal.value, self.tangent.value)


class _PrimalMode:
    """Plain tensors through plain tile functions."""

    def call(self, function: Callable, *args):
        return function(*args)

    def slice(self, x: torch.Tensor, start: int, end: int) -> torch.Tensor:
        return x[:, start:end]

    def primal(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def zero_state(self, scan: Scan, like: torch.Tensor) -> ScanState:
        return scan.zero_state(like.shape[0], like)

    def outputs(self, length: int) -> TileOutput:
        return TileOutput(length)


PRIMAL = _PrimalMode()


class TangentMode:
    """Duals through tile functions: (f(x), J_f · t for each of k tangents t)."""

    def __init__(self, directions: int):
        self.k = directions

    def call(self, function: Callable, *args):
        primals = tree_map(lambda d: d.primal, args)
        tangents = tree_map(lambda d: d.tangent, args)
        out, out_dot = vmap(lambda *t: jvp(function, primals, t), out_dims=(None, 0))(*tangents)
        return tree_map(Dual, out, out_dot)

    def slice(self, x: Dual, start: int, end: int) -> Dual:
        return Dual(x.primal[:, start:end], x.tangent[:, :, start:end])

    def primal(self, x: Dual) -> torch.Tensor:
        return x.primal

    def zero_state(self, scan: Scan, like: Dual) -> tuple[Dual, ...]:
        state = scan.zero_state(like.primal.shape[0], like.primal)
        return tuple(Dual(t, t.new_zeros(self.k, *t.shape)) for t in state)

    def outputs(self, length: int) -> _Outputs:
        return _Outputs(length)


Mode = _PrimalMode | TangentMode


def _combine(layer: TiledLayer) -> Callable:
    return lambda x, *parts: layer.combine(x, list(parts))


def _read(model: SweepModel, readout: Readout, reference: torch.Tensor, offset: int) -> Callable:
    return lambda stream: readout(model.head(stream), reference, offset)


def layer_sweep(
    layer: TiledLayer,
    x,
    tiles: Tiles,
    mode: Mode = PRIMAL,
    counter: ProgressCounter | None = None,
    visit: Visit | None = None,
    tile_functions: list[TileFunction] | None = None,
    backend: Backend = None,
):
    """One layer over the whole stream, each scan swept tile by tile from its zero state.

    Additive layers accumulate every scan into one output buffer (two L x width tensors
    live: input and output); others keep each scan's contribution for their pointwise
    combine. `visit` sees the state each tile starts from; `tile_functions` (one per scan,
    default: each scan's `tile` on the `backend` kernels) compute the tiles.
    """
    if tile_functions is None:
        tile_functions = [partial(scan.tile, backend=backend) for scan in layer.scans]
    length = mode.primal(x).shape[1]
    output = mode.outputs(length)
    if layer.additive:
        for s, e in tiles:
            output.write(s, e, mode.call(layer.skip, mode.slice(x, s, e)))
    contributions = []
    for number, (scan, tile_function) in enumerate(zip(layer.scans, tile_functions)):
        state = mode.zero_state(scan, x)
        contribution = None if layer.additive else mode.outputs(length)
        for index, (s, e) in enumerate(sweep_order(scan.reverse, tiles)):
            if visit is not None:
                visit(number, index, (s, e), state)
            out, state = mode.call(tile_function, mode.slice(x, s, e), state)
            if layer.additive:
                output.add(s, e, out, scan.channels)
            else:
                contribution.write(s, e, out)
            if counter:
                counter.step()
        if not layer.additive:
            contributions.append(contribution.value)
    if not layer.additive:
        for s, e in tiles:
            parts = [mode.slice(c, s, e) for c in contributions]
            output.write(s, e, mode.call(_combine(layer), mode.slice(x, s, e), *parts))
    return output.value


def sweep_layers(model: SweepModel, onehot, readout: Readout, reference: torch.Tensor, tiles: Tiles,
                 mode: Mode = PRIMAL, counter: ProgressCounter | None = None, backend: Backend = None):
    """readout of the model's outputs (b, L, ...), computed layer after layer."""
    length = mode.primal(onehot).shape[1]
    stream = mode.outputs(length)
    for s, e in tiles:
        stream.write(s, e, mode.call(model.embed, mode.slice(onehot, s, e)))
    stream = stream.value
    for layer in model.tiled_layers():
        stream = layer_sweep(layer, stream, tiles, mode, counter, backend=backend)
    result = mode.outputs(length)
    for s, e in tiles:
        result.write(s, e, mode.call(_read(model, readout, reference, s), mode.slice(stream, s, e)))
        if counter:
            counter.step()
    return result.value


def stream_causal(model: SweepModel, onehot, readout: Readout, reference: torch.Tensor, tiles: Tiles,
                  mode: Mode = PRIMAL, counter: ProgressCounter | None = None, backend: Backend = None):
    """readout of a causal model's outputs (b, L, ...), each tile through all layers at once."""
    layers = model.tiled_layers()
    result = mode.outputs(mode.primal(onehot).shape[1])
    states = None
    for s, e in tiles:
        stream = mode.call(model.embed, mode.slice(onehot, s, e))
        if states is None:
            states = [[mode.zero_state(scan, stream) for scan in layer.scans] for layer in layers]
        for layer, layer_states in zip(layers, states):
            contributions = []
            for index, scan in enumerate(layer.scans):
                out, layer_states[index] = mode.call(partial(scan.tile, backend=backend), stream, layer_states[index])
                contributions.append(out)
            stream = mode.call(_combine(layer), stream, *contributions)
        result.write(s, e, mode.call(_read(model, readout, reference, s), stream))
        if counter:
            counter.step()
    return result.value
