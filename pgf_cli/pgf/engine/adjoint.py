"""The PGF adjoint engine: exact d f / d onehot in memory bounded by the tile.

Forward sweep: the stream entering every layer is kept (L x width per layer;
on host memory with `offload`), and every scan's carried state at the start of
every tile; nothing else. Reverse sweep, last layer first: the cotangent of the
layer's output is pulled back through its pointwise parts tile by tile and
through each scan tile by tile against the scan's direction (right to left for
causal scans, left to right for anti-causal ones), recomputing one tile at a
time from its saved start state and carrying the state's cotangent. The result
is the same function autograd computes, only reordered and recomputed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch

from pgf.engine.base import Engine, GradientResult, Progress, tile_spans
from pgf.models.base import SequenceModel
from pgf.models.layered import Scan, ScanState, TiledLayer
from pgf.models.targets import Target

DEFAULT_TILE = 2048
Tiles = list[tuple[int, int]]


@contextmanager
def frozen(model: torch.nn.Module):
    """No parameter gradients while sweeping (only input gradients are wanted)."""
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(model.parameters(), flags):
            parameter.requires_grad_(flag)


def map_tiles(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tiles: Tiles) -> torch.Tensor:
    """A position-wise function applied tile by tile into one preallocated output (no concatenation copy)."""
    result = None
    for s, e in tiles:
        out = function(x[:, s:e])
        if result is None:
            result = out.new_empty(out.shape[0], x.shape[1], *out.shape[2:])
        result[:, s:e] = out
    return result


def pointwise_vjp(
    function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, cotangent: torch.Tensor, tiles: Tiles
) -> torch.Tensor:
    """x_bar = J^T cotangent of a position-wise function, one tile at a time."""
    result = torch.empty_like(x)
    for s, e in tiles:
        x_tile = x[:, s:e].detach().requires_grad_(True)
        with torch.enable_grad():
            out = function(x_tile)
        (grad,) = torch.autograd.grad(out, x_tile, cotangent[:, s:e].to(out.dtype))
        result[:, s:e] = grad
    return result


def sweep_order(scan: Scan, tiles: Tiles) -> Tiles:
    """The tiles in the order the scan visits them: right to left for anti-causal scans."""
    return list(reversed(tiles)) if scan.reverse else list(tiles)


def layer_sweep(
    layer: TiledLayer,
    x: torch.Tensor,
    tiles: Tiles,
    visit: Callable[[int, int, tuple[int, int], ScanState], None] | None = None,
) -> torch.Tensor:
    """One layer over the whole stream, each scan swept tile by tile from its zero state.

    Additive layers accumulate every scan into one output buffer (two L x width tensors
    live: input and output); others keep each scan's contribution for their pointwise
    combine. visit(scan number, tile number in sweep order, tile, state) sees the state
    each tile starts from.
    """
    additive = layer.strategy == "add"
    output = map_tiles(layer.skip, x, tiles) if additive else None
    contributions = []
    for number, scan in enumerate(layer.scans):
        state = scan.zero_state(x.shape[0], x)
        contribution = None
        for index, (s, e) in enumerate(sweep_order(scan, tiles)):
            if visit is not None:
                visit(number, index, (s, e), state)
            out, state = scan.tile(x[:, s:e], state)
            if additive:
                output[:, s:e] += out
            else:
                if contribution is None:
                    contribution = out.new_empty(out.shape[0], x.shape[1], *out.shape[2:])
                contribution[:, s:e] = out
        if not additive:
            contributions.append(contribution)
    return output if additive else layer.combine(x, contributions)


class _Counter:
    def __init__(self, progress: Progress | None, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def step(self) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)


class AdjointEngine(Engine):
    """Reverse-mode sweep over tiles; `tile` positions are recomputed at a time."""

    name = "pgf"

    def __init__(self, tile: int | None = None, offload: bool | None = None):
        """offload: keep layer inputs on host memory (True), never (False), or when they
        would take more than half the accelerator's free memory (None)."""
        self.tile = tile or DEFAULT_TILE
        self.offload = offload
        self._offloading = False

    def _store(self, t: torch.Tensor) -> torch.Tensor:
        return t.to("cpu", non_blocking=True) if self._offloading and t.device.type != "cpu" else t

    def _decide_offload(self, n_layers: int, stream: torch.Tensor) -> bool:
        if stream.device.type != "cuda":
            return False
        if self.offload is not None:
            return self.offload
        free, _ = torch.cuda.mem_get_info(stream.device)
        return n_layers * stream.numel() * stream.element_size() > free / 2

    def gradient(
        self,
        model: SequenceModel,
        onehot: torch.Tensor,
        target: Target,
        region_starts: Sequence[int],
        progress: Progress | None = None,
    ) -> GradientResult:
        batch, L, _ = onehot.shape
        tiles = tile_spans(L, self.tile)
        layers = model.tiled_layers()
        counter = _Counter(progress, 2 * len(tiles) * sum(len(layer.scans) for layer in layers) + 2 * len(tiles))
        device = onehot.device
        with frozen(model), torch.no_grad():
            # forward sweep: keep each layer's input stream and every scan's tile-start states
            stream = map_tiles(model.embed, onehot, tiles)
            self._offloading = self._decide_offload(len(layers), stream)
            inputs, starts = [], []
            for layer in layers:
                inputs.append(self._store(stream))
                stream, layer_starts = self._layer_forward(layer, stream, tiles, counter)
                starts.append(layer_starts)

            # the target and its cotangent at the last stream, tile by tile; each tile of the
            # stream is read once, so its cotangent overwrites it in place (and no other name
            # may keep it: held through the reverse sweep it would be one more L x width tensor)
            values = torch.zeros(batch, dtype=stream.dtype, device=device)
            cotangent, stream = stream, None
            for s, e in tiles:
                x_tile = cotangent[:, s:e].clone().requires_grad_(True)
                with torch.enable_grad():
                    contribution = target.contributions(model.head(x_tile), onehot, region_starts, offset=s).sum(dim=1)
                    total = contribution.sum()
                (cotangent[:, s:e],) = torch.autograd.grad(total, x_tile)
                values += contribution.detach().to(values.dtype)
                counter.step()

            # reverse sweep, last layer first; each layer's input is released once pulled back through
            for layer in reversed(layers):
                x = inputs.pop().to(device, non_blocking=True)
                cotangent = self._layer_backward(layer, x, cotangent, starts.pop(), tiles, counter)
                del x
            gradient = pointwise_vjp(model.embed, onehot, cotangent, tiles)
            for _ in tiles:
                counter.step()
        return GradientResult(gradient=gradient, target_value=values)

    def _layer_forward(self, layer: TiledLayer, x: torch.Tensor, tiles: Tiles, counter: _Counter):
        """The layer's output stream, and each scan's state at the start of each tile it visits."""
        layer_starts: list[dict[tuple[int, int], ScanState]] = [{} for _ in layer.scans]
        saved: dict[int, tuple[torch.Tensor, ...]] = {}

        def keep(number: int, index: int, span: tuple[int, int], state: ScanState) -> None:
            if index == 0:
                # one preallocated buffer per state part: thousands of small long-lived tensors
                # interleaved with each tile's large temporaries would fragment the heap
                saved[number] = tuple(self._store(t.new_empty(len(tiles), *t.shape)) for t in state)
            for buffer_part, part in zip(saved[number], state):
                buffer_part[index].copy_(part)
            layer_starts[number][span] = tuple(buffer_part[index] for buffer_part in saved[number])
            counter.step()

        return layer_sweep(layer, x, tiles, visit=keep), layer_starts

    def _scan_outputs(self, scan: Scan, x: torch.Tensor, starts: dict, tiles: Tiles) -> torch.Tensor:
        """Recompute one scan's contribution from its saved tile-start states."""
        pieces = [scan.tile(x[:, s:e], tuple(t.to(x.device) for t in starts[(s, e)]))[0] for s, e in tiles]
        return torch.cat(pieces, dim=1)

    def _layer_backward(
        self,
        layer: TiledLayer,
        x: torch.Tensor,
        cotangent: torch.Tensor,
        layer_starts: list[dict],
        tiles: Tiles,
        counter: _Counter,
    ) -> torch.Tensor:
        """Pull the cotangent of the layer's output back to its input stream."""
        if layer.strategy == "add":
            x_bar = pointwise_vjp(layer.skip, x, cotangent, tiles)
            scan_cotangents = [cotangent] * len(layer.scans)
        else:  # the pointwise combine needs every scan's contribution
            contributions = [self._scan_outputs(scan, x, st, tiles) for scan, st in zip(layer.scans, layer_starts)]
            x_bar = torch.empty_like(x)
            scan_cotangents = [torch.empty_like(c) for c in contributions]
            for s, e in tiles:
                x_tile = x[:, s:e].detach().requires_grad_(True)
                parts = [c[:, s:e].detach().requires_grad_(True) for c in contributions]
                with torch.enable_grad():
                    out = layer.combine(x_tile, parts)
                grads = torch.autograd.grad(out, [x_tile, *parts], cotangent[:, s:e].to(out.dtype))
                x_bar[:, s:e] = grads[0]
                for buffer, grad in zip(scan_cotangents, grads[1:]):
                    buffer[:, s:e] = grad
            del contributions
        for scan, scan_starts, scan_cotangent in zip(layer.scans, layer_starts, scan_cotangents):
            self._scan_backward(scan, x, scan_cotangent, scan_starts, tiles, x_bar, counter)
        return x_bar

    def _scan_backward(
        self,
        scan: Scan,
        x: torch.Tensor,
        cotangent: torch.Tensor,
        scan_starts: dict,
        tiles: Tiles,
        x_bar: torch.Tensor,
        counter: _Counter,
    ) -> None:
        """Add the scan's pull-back to x_bar, visiting tiles against the scan's direction."""
        state_bar = None
        for s, e in reversed(sweep_order(scan, tiles)):
            x_tile = x[:, s:e].detach().requires_grad_(True)
            state = tuple(t.to(x.device).detach().requires_grad_(True) for t in scan_starts[(s, e)])
            with torch.enable_grad():
                out, new_state = scan.tile(x_tile, state)
            outputs, grad_outputs = [out], [cotangent[:, s:e].to(out.dtype)]
            if state_bar is not None:
                outputs += list(new_state)
                grad_outputs += list(state_bar)
            grads = torch.autograd.grad(outputs, [x_tile, *state], grad_outputs, allow_unused=True)
            x_bar[:, s:e] += grads[0]
            state_bar = tuple(torch.zeros_like(t) if g is None else g for t, g in zip(state, grads[1:]))
            counter.step()
