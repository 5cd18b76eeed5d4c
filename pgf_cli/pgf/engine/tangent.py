"""The PGF tangent engine: J·v for many input directions v at once, tile by tile.

Forward mode through the same decomposition the adjoint uses: every scan is
swept in its own direction carrying (state, state tangent), one tile at a
time; a batch of k tangent directions shares one primal computation
(`torch.func.vmap` over `torch.func.jvp`: the primal is not batched, only the
tangents are). Bidirectional models are swept layer after layer, so memory
holds the primal stream and k tangent streams of one layer boundary (L x width
each); models whose scans are all causal stream every tile through all layers
at once, carrying each scan's (state, state tangent), so memory is O(tile)
besides the outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import jvp, vmap

from pgf.engine.adjoint import DEFAULT_TILE, frozen
from pgf.engine.base import Progress, tile_spans
from pgf.models.base import SequenceModel
from pgf.models.layered import Scan, TiledLayer

# output(outputs_tile, onehot, offset) -> (b, T, C): the per-position quantity whose change is wanted
OutputFunction = Callable[[dict[str, torch.Tensor], torch.Tensor, int], torch.Tensor]


def _pointwise_jvp(function, x: torch.Tensor, x_dot: torch.Tensor, tiles) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x), J_f x_dot) of a position-wise f for k tangents x_dot (k, b, L, w), tile by tile."""
    primal = tangent = None
    for s, e in tiles:
        x_tile = x[:, s:e]
        out, out_dot = vmap(lambda d: jvp(function, (x_tile,), (d,)), out_dims=(None, 0))(x_dot[:, :, s:e])
        if primal is None:
            primal = out.new_empty(out.shape[0], x.shape[1], *out.shape[2:])
            tangent = out_dot.new_empty(out_dot.shape[0], out.shape[0], x.shape[1], *out.shape[2:])
        primal[:, s:e], tangent[:, :, s:e] = out, out_dot
    return primal, tangent


def scan_jvp(scan: Scan, x: torch.Tensor, x_dot: torch.Tensor, tiles) -> tuple[torch.Tensor, torch.Tensor]:
    """A scan's contribution (b, L, w) and its tangents (k, b, L, w) along x_dot (k, b, L, w_in),
    sweeping tiles in the scan's direction with the carried (state, state tangents)."""
    k = x_dot.shape[0]
    state = scan.zero_state(x.shape[0], x)
    state_dot = tuple(torch.zeros((k, *t.shape), dtype=t.dtype, device=t.device) for t in state)
    out_all = out_dot_all = None
    for s, e in (reversed(tiles) if scan.reverse else tiles):
        (out, new_state), (out_dot, new_state_dot) = vmap(
            lambda xd, sd: jvp(scan.tile, (x[:, s:e], state), (xd, sd)), out_dims=(None, 0)
        )(x_dot[:, :, s:e], state_dot)
        if out_all is None:
            out_all = out.new_empty(out.shape[0], x.shape[1], *out.shape[2:])
            out_dot_all = out_dot.new_empty(k, out.shape[0], x.shape[1], *out.shape[2:])
        out_all[:, s:e], out_dot_all[:, :, s:e] = out.detach(), out_dot.detach()
        state = tuple(t.detach() for t in new_state)
        state_dot = tuple(t.detach() for t in new_state_dot)
    return out_all, out_dot_all


class TangentEngine:
    """Forward-mode sweep over tiles; `tile` positions are computed at a time."""

    name = "pgf-tangent"

    def __init__(self, tile: int | None = None):
        self.tile = tile or DEFAULT_TILE

    def jvp(
        self,
        model: SequenceModel,
        onehot: torch.Tensor,
        directions: torch.Tensor,
        output: OutputFunction,
        progress: Progress | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs (b, L, C) at `onehot` and their directional derivatives (k, b, L, C)
        along `directions` (k, b, L, 4)."""
        L = onehot.shape[1]
        tiles = tile_spans(L, self.tile)
        layers = model.tiled_layers()
        if all(not scan.reverse for layer in layers for scan in layer.scans):
            with frozen(model):
                return self._stream_causal(model, layers, onehot, directions.to(onehot.dtype), output, tiles, progress)
        total, done = sum(len(layer.scans) for layer in layers) * len(tiles) + len(tiles), 0
        with frozen(model):
            stream, stream_dot = _pointwise_jvp(model.embed, onehot, directions.to(onehot.dtype), tiles)
            for layer in layers:
                stream, stream_dot, done = self._layer(layer, stream, stream_dot, tiles, progress, done, total)
            head = lambda x_tile, offset: output(model.head(x_tile), onehot, offset)  # noqa: E731
            primal = tangent = None
            for s, e in tiles:
                out, out_dot = vmap(
                    lambda d: jvp(lambda x: head(x, s), (stream[:, s:e],), (d,)), out_dims=(None, 0)
                )(stream_dot[:, :, s:e])
                if primal is None:
                    primal = out.new_empty(out.shape[0], L, *out.shape[2:])
                    tangent = out_dot.new_empty(out_dot.shape[0], out.shape[0], L, *out.shape[2:])
                primal[:, s:e], tangent[:, :, s:e] = out.detach(), out_dot.detach()
                done += 1
                if progress:
                    progress(done, total)
        return primal, tangent

    def _stream_causal(self, model, layers, onehot, directions, output, tiles, progress):
        """All layers tile by tile (causal models only): each scan carries its own (state, tangent)."""
        k, L = directions.shape[0], onehot.shape[1]
        first_stream = model.embed(onehot[:, :1])
        states = [[scan.zero_state(onehot.shape[0], first_stream) for scan in layer.scans] for layer in layers]
        state_dots = [[tuple(torch.zeros((k, *t.shape), dtype=t.dtype, device=t.device) for t in st) for st in row] for row in states]
        primal = tangent = None
        for index, (s, e) in enumerate(tiles):

            def tile_function(x_tile, *carried):
                """(outputs of the tile, states after it) from the tile's one-hot and the carried states."""
                flat = iter(carried)
                stream = model.embed(x_tile)
                new_states = []
                for layer in layers:
                    contributions = []
                    for scan in layer.scans:
                        out, new_state = scan.tile(stream, (next(flat), next(flat)))
                        contributions.append(out)
                        new_states += list(new_state)
                    stream = layer.combine(stream, contributions)
                return (output(model.head(stream), onehot, s), *new_states)

            carried = [t for row in states for st in row for t in st]
            carried_dots = [t for row in state_dots for st in row for t in st]
            results, result_dots = vmap(
                lambda d, *cds: jvp(tile_function, (onehot[:, s:e], *carried), (d, *cds)), out_dims=(None, 0)
            )(directions[:, :, s:e], *carried_dots)
            out, out_dot = results[0], result_dots[0]
            flat, flat_dots = iter(results[1:]), iter(result_dots[1:])
            states = [[(next(flat).detach(), next(flat).detach()) for _ in row] for row in states]
            state_dots = [[(next(flat_dots).detach(), next(flat_dots).detach()) for _ in row] for row in state_dots]
            if primal is None:
                primal = out.new_empty(out.shape[0], L, *out.shape[2:])
                tangent = out_dot.new_empty(k, out.shape[0], L, *out.shape[2:])
            primal[:, s:e], tangent[:, :, s:e] = out.detach(), out_dot.detach()
            if progress:
                progress(index + 1, len(tiles))
        return primal, tangent

    def _layer(self, layer: TiledLayer, x, x_dot, tiles, progress, done, total):
        contributions, contribution_dots = [], []
        for scan in layer.scans:
            out, out_dot = scan_jvp(scan, x, x_dot, tiles)
            contributions.append(out)
            contribution_dots.append(out_dot)
            done += len(tiles)
            if progress:
                progress(done, total)
        combined, combined_dot = None, None
        for s, e in tiles:
            parts = [c[:, s:e] for c in contributions]
            part_dots = [d[:, :, s:e] for d in contribution_dots]
            out, out_dot = vmap(
                lambda xd, *pds: jvp(lambda xt, *ps: layer.combine(xt, list(ps)), (x[:, s:e], *parts), (xd, *pds)),
                out_dims=(None, 0),
            )(x_dot[:, :, s:e], *part_dots)
            if combined is None:
                combined = out.new_empty(out.shape[0], x.shape[1], *out.shape[2:])
                combined_dot = out_dot.new_empty(out_dot.shape[0], out.shape[0], x.shape[1], *out.shape[2:])
            combined[:, s:e], combined_dot[:, :, s:e] = out.detach(), out_dot.detach()
        return combined, combined_dot, done

