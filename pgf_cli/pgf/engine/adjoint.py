"""The adjoint sweep: exact d f / d onehot in memory bounded by the tile.

Forward pass: the stream entering every layer is kept (L x width per layer; on
host memory with offload), every scan's carried state at the start of every
tile, and each scan tile's residual (the compiled kernels' chunk states, see
`_ResidualRecorder`, and Mamba-2 mixers' in_proj outputs where every layer's
fit, `_plan`, once for a scan and its tied `twin`); where that does not fit,
only every few layers' inputs, the others run forward again in the reverse
pass (`keep_plan`). Reverse pass, last layer first: the cotangent of the
layer's output is pulled back through its pointwise parts tile by tile and
through each scan tile by tile against the scan's direction (right to left for
causal scans, left to right for anti-causal ones), one tile at a time from its
saved start state, carrying the state's cotangent: through the mixer's own VJP
from the residual (the scan is not run again), or by recomputing the tile under
autograd. A scan and its tied `twin` pull back through their shared input
projection in one product per tile (the first defers its part to the second).
The result is the same function autograd computes, only reordered and
recomputed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.profiler import record_function
from torch.utils._pytree import tree_flatten, tree_unflatten

from pgf.engine.base import GradientResult
from pgf.engine.keep_plan import KeepPlan, bytes_held, memory_budget, plan_for
from pgf.engine.protocol import (
    Backend,
    ProjectionCotangent,
    Readout,
    Scan,
    ScanState,
    SweepModel,
    TiledLayer,
    Twin,
    slim_residual,
)
from pgf.engine.streaming import layer_sweep
from pgf.engine.tile_primitives import ProgressCounter, TileOutput, Tiles, frozen, map_tiles, sweep_order

StartStates = dict[tuple[int, int], ScanState]  # tile span -> the scan's state at its start
Residuals = dict[tuple[int, int], object]  # tile span -> what the scan's mixer kept of it (Scan.tile_saving)


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


class Offload:
    """Where saved layer inputs and states live: on the device, or on host memory."""

    def __init__(self, choice: bool | None):
        """choice: always (True), never (False), or when the layer inputs would take more
        than half the accelerator's free memory (None)."""
        self.choice, self.active = choice, False

    def decide(self, n_layers: int, stream: torch.Tensor) -> None:
        if stream.device.type != "cuda":
            self.active = False
        elif self.choice is not None:
            self.active = self.choice
        else:
            free, _ = torch.cuda.mem_get_info(stream.device)
            self.active = n_layers * stream.numel() * stream.element_size() > free / 2

    def store(self, t: torch.Tensor) -> torch.Tensor:
        return t.to("cpu", non_blocking=True) if self.active and t.device.type != "cpu" else t


def adjoint_gradient(
    model: SweepModel,
    onehot: torch.Tensor,
    readout: Readout,
    tiles: Tiles,
    offload: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
    backend: Backend = None,
    segment: int | None = None,
) -> GradientResult:
    """d f / d onehot (b, L, 4) with f = readout summed over positions (and channels); the mixers'
    tiles run the `backend` kernels. `segment`: layers per recompute segment (`keep_plan`); None
    chooses from the memory free at the start (every layer kept when they fit)."""
    batch = onehot.shape[0]
    layers = model.tiled_layers()
    scan_steps = len(tiles) * sum(len(layer.scans) for layer in layers)
    counter = ProgressCounter(progress, 2 * scan_steps + 2 * len(tiles))
    store = Offload(offload)
    kept: list[_Kept | None] = [None] * len(layers)
    # record_function labels name the phases in a torch.profiler trace (bench/profile_engines.py)
    with frozen(model), torch.no_grad():
        # forward pass: keep each layer's input stream and every scan's tile-start states (all
        # layers, or per the plan made from the first layer's footprint: keep_plan)
        with record_function("pgf::forward_pass"):
            stream = map_tiles(model.embed, onehot, tiles)
            store.decide(len(layers), stream)
            plan = None if segment is None else KeepPlan(len(layers), segment)
            # residuals without what only saves recomputation, in every layer or none (`_plan`)
            slim = plan is not None and not plan.keeps_all
            for index, layer in enumerate(layers):
                if plan is None or plan.kept_whole(index):
                    kept[index] = _Kept(store.store(stream),
                                        *_layer_forward(layer, stream, tiles, store, counter, backend, slim))
                    stream = kept[index].output
                    kept[index].output = None
                else:
                    if plan.checkpoint(index):
                        kept[index] = _Kept(store.store(stream))
                    stream = layer_sweep(layer, stream, tiles, counter=counter, backend=backend)
                if plan is None:
                    plan, slim = _plan(len(layers), kept[0], memory_budget(onehot.device, store.active))
                    if not plan.kept_whole(0):
                        kept[0] = _Kept(kept[0].input)
                    counter.total += len(tiles) * sum(len(layers[i].scans) for i in range(plan.recomputed_layers))

            plan = plan or KeepPlan(len(layers), max(1, len(layers)))  # no layers: nothing to keep

        # f and its cotangent at the last stream, tile by tile; each tile of the stream is
        # read once, so its cotangent overwrites it in place (and no other name may keep it:
        # held through the reverse pass it would be one more L x width tensor)
        values = torch.zeros(batch, dtype=stream.dtype, device=onehot.device)
        cotangent, stream = stream, None
        for s, e in tiles:
            x_tile = cotangent[:, s:e].clone().requires_grad_(True)
            with torch.enable_grad():
                contribution = readout(model.head(x_tile), onehot, s).flatten(1).sum(dim=1)
                total = contribution.sum()
            (cotangent[:, s:e],) = torch.autograd.grad(total, x_tile)
            values += contribution.detach().to(values.dtype)
            counter.step()

        # reverse pass, last segment first, each segment's layers last first; a segment not kept
        # whole runs forward again from its checkpoint; each layer's input is released once pulled back
        for span in reversed(plan.segments()):
            if not plan.kept_whole(span.start):
                with record_function("pgf::segment_forward"):
                    stream = kept[span.start].input.to(onehot.device, non_blocking=True)
                    for index in span:
                        kept[index] = _Kept(store.store(stream),
                                            *_layer_forward(layers[index], stream, tiles, store, counter, backend, slim))
                        stream = kept[index].output
                        kept[index].output = None
                    del stream
            for index in reversed(span):
                saved, kept[index] = kept[index], None
                x = saved.input.to(onehot.device, non_blocking=True)
                saved.input = None
                cotangent = _layer_backward(layers[index], x, cotangent, saved.starts, saved.residuals, tiles,
                                            counter, backend)
                del x, saved
        gradient = pointwise_vjp(model.embed, onehot, cotangent, tiles)
        for _ in tiles:
            counter.step()
    return GradientResult(gradient=gradient, target_value=values, offloaded=store.active,
                          recomputed_layers=plan.recomputed_layers)


def _plan(n_layers: int, first: _Kept, budget: float | None) -> tuple[KeepPlan, bool]:
    """The plan from what the first layer kept (full residuals), and whether residuals are slim:
    full only when every layer's fit the budget, else slim everywhere (the first layer's slimmed
    in place). Slim residuals decide the plan, so full ones never cost a recomputed segment; and
    none are kept full when not all fit, since each costs several layer inputs of memory for a
    few percent of the time (kept lean, a long region leaves memory to other work)."""
    slim_residuals = [{span: slim_residual(r) for span, r in by_tile.items()} for by_tile in first.residuals]
    slim_bytes = bytes_held(first.input, first.starts, slim_residuals)
    full_bytes = bytes_held(first.input, first.starts, first.residuals)
    plan = plan_for(n_layers, bytes_held(first.input), slim_bytes, budget)
    if plan.keeps_all and (budget is None or n_layers * full_bytes <= budget):
        return plan, False
    first.residuals = slim_residuals
    return plan, True


class _Kept:
    """What the forward pass keeps of one layer: its input, and (kept whole) its output until the
    next layer takes it, its scans' tile-start states and residuals."""

    def __init__(self, input: object, output: torch.Tensor | None = None, starts: list | None = None,
                 residuals: list | None = None):
        self.input, self.output, self.starts, self.residuals = input, output, starts, residuals


class _ResidualRecorder:
    """Runs a scan's tiles keeping their residuals (`Scan.tile_saving`), in sweep order, for the
    reverse pass to pull back through without recomputing the scan: on every device (the compiled
    CPU and the Triton kernels both keep their chunk states, E N / chunk per position: an eighth to
    a half of the layer inputs' memory, which `keep_plan` counts), offloaded with the layer inputs."""

    def __init__(self, scan: Scan, tiles: Tiles, backend: Backend, store: Offload, slim: bool = False,
                 twin: _ResidualRecorder | None = None):
        """twin: the recorder of the scan's `twin` (already run over every tile), else None."""
        self.scan, self.reverse, self.n_tiles, self.backend, self.store = scan, scan.reverse, len(tiles), backend, store
        self.slim, self.twin = slim, twin
        self.order = sweep_order(scan.reverse, tiles)
        self.number = {span: number for number, span in enumerate(self.order)}
        self.residuals: list[object] = []
        self.arenas: list[torch.Tensor | None] | None = None

    def tile(self, x_tile: torch.Tensor, state: ScanState) -> tuple[torch.Tensor, ScanState]:
        """The scan's tile function, recording the tile's residual."""
        twin = None if self.twin is None else self.twin.twin_of(self, self.order[len(self.residuals)])
        out, new_state, residual = self.scan.tile_saving(x_tile, state, self.backend, twin)
        self.residuals.append(self._in_arena(slim_residual(residual) if self.slim else residual))
        return out, new_state

    def twin_of(self, other: _ResidualRecorder, span: tuple[int, int]) -> Twin:
        """What this recorder kept of tile `span`, as the `Twin` of `other`'s scan."""
        return Twin(self.residuals[self.number[span]], flipped=self.reverse != other.reverse)

    def _in_arena(self, residual: object) -> object:
        """The residual with its tensors copied into one buffer per part for all tiles (as the
        start states are): thousands of small long-lived tensors between each tile's large
        temporaries would fragment the heap (+30% of the gradient's own memory, measured)."""
        leaves, spec = tree_flatten(residual)
        if self.arenas is None:
            self.arenas = [self.store.store(leaf.new_empty(self.n_tiles, leaf.numel()))
                           if isinstance(leaf, torch.Tensor) else None for leaf in leaves]
        index = len(self.residuals)
        placed = []
        for leaf, arena in zip(leaves, self.arenas):
            if isinstance(leaf, torch.Tensor) and arena is not None and leaf.numel() <= arena.shape[1] \
                    and leaf.dtype == arena.dtype and index < arena.shape[0]:
                view = arena[index, : leaf.numel()].view(leaf.shape)
                view.copy_(leaf)
                leaf = view
            placed.append(leaf)
        return tree_unflatten(placed, spec)

    def by_tile(self, tiles: Tiles) -> Residuals:
        return dict(zip(sweep_order(self.reverse, tiles), self.residuals))


def _layer_forward(layer: TiledLayer, x: torch.Tensor, tiles: Tiles, store: Offload, counter: ProgressCounter,
                   backend: Backend, slim: bool = False):
    """The layer's output stream, each scan's state at the start of each tile it visits, and each
    scan's residuals by tile (what its mixer keeps to be pulled back through without a recompute;
    `slim`: without what only saves recomputation)."""
    layer_starts: list[StartStates] = [{} for _ in layer.scans]
    saved: dict[int, tuple[torch.Tensor, ...]] = {}
    saving: list[_ResidualRecorder] = []
    for scan in layer.scans:
        twin = None if scan.twin is None else saving[scan.twin]
        saving.append(_ResidualRecorder(scan, tiles, backend=backend, store=store, slim=slim, twin=twin))

    def keep(number: int, index: int, span: tuple[int, int], state: ScanState) -> None:
        if index == 0:
            # one preallocated buffer per state part: thousands of small long-lived tensors
            # interleaved with each tile's large temporaries would fragment the heap
            saved[number] = tuple(store.store(t.new_empty(len(tiles), *t.shape)) for t in state)
        for buffer_part, part in zip(saved[number], state):
            buffer_part[index].copy_(part)
        layer_starts[number][span] = tuple(buffer_part[index] for buffer_part in saved[number])

    output = layer_sweep(layer, x, tiles, counter=counter, visit=keep, tile_functions=[r.tile for r in saving])
    return output, layer_starts, [scan.by_tile(tiles) for scan in saving]


def _scan_outputs(scan: Scan, x: torch.Tensor, starts: StartStates, tiles: Tiles, backend: Backend) -> torch.Tensor:
    """Recompute one scan's contribution from its saved tile-start states."""
    result = TileOutput(x.shape[1])
    for s, e in tiles:
        result.write(s, e, scan.tile(x[:, s:e], tuple(t.to(x.device) for t in starts[(s, e)]), backend)[0])
    return result.value


def _layer_backward(
    layer: TiledLayer,
    x: torch.Tensor,
    cotangent: torch.Tensor,
    layer_starts: list[StartStates],
    layer_residuals: list[Residuals],
    tiles: Tiles,
    counter: ProgressCounter,
    backend: Backend,
) -> torch.Tensor:
    """Pull the cotangent of the layer's output back to its input stream."""
    if layer.additive:
        x_bar = pointwise_vjp(layer.skip, x, cotangent, tiles)
        scan_cotangents = [scan.narrowed(cotangent) for scan in layer.scans]
    else:  # the pointwise combine needs every scan's contribution
        contributions = [_scan_outputs(scan, x, st, tiles, backend) for scan, st in zip(layer.scans, layer_starts)]
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
    # a scan whose later twin has a residual for a tile defers that tile's pull-back through their
    # shared input projection; the twin adds it to its own and pulls both through at once
    deferred: dict[int, dict[tuple[int, int], torch.Tensor]] = {}
    for number, (scan, scan_starts, scan_residuals, scan_cotangent) in enumerate(
            zip(layer.scans, layer_starts, layer_residuals, scan_cotangents)):
        later = [layer_residuals[k] for k, other in enumerate(layer.scans) if other.twin == number]
        defer_to = later[0] if len(later) == 1 else None
        twin = None
        if scan.twin is not None:
            twin = _TwinTiles(layer_residuals[scan.twin], layer.scans[scan.twin].reverse != scan.reverse,
                              deferred.pop(scan.twin, {}))
        deferred[number] = _scan_backward(scan, x, scan_cotangent, scan_starts, scan_residuals, tiles, x_bar, counter,
                                          backend, twin, defer_to)
    return x_bar


class _TwinTiles(NamedTuple):
    """A scan's twin in the reverse pass: its residuals by tile, whether it reads tiles the other
    way over length, and the projection cotangents it deferred by tile (taken as they are used)."""

    residuals: Residuals
    flipped: bool
    deferred: dict[tuple[int, int], torch.Tensor]

    def of(self, span: tuple[int, int]) -> Twin:
        return Twin(self.residuals[span], self.flipped, self.deferred.pop(span, None))


def _scan_backward(
    scan: Scan,
    x: torch.Tensor,
    cotangent: torch.Tensor,
    scan_starts: StartStates,
    scan_residuals: Residuals,
    tiles: Tiles,
    x_bar: torch.Tensor,
    counter: ProgressCounter,
    backend: Backend,
    twin: _TwinTiles | None = None,
    defer_to: Residuals | None = None,
) -> dict[tuple[int, int], torch.Tensor]:
    """Add the scan's pull-back to x_bar, visiting tiles against the scan's direction: through the
    mixer's own VJP where the forward pass kept a residual, else by recomputing the tile under autograd.
    `twin`: the scan's `twin`, if any; `defer_to`: the residuals of the later scan whose twin this is,
    if any: where it has one, the mixer may defer a tile (returned: its projection cotangents by tile)."""
    state_bar = None
    deferred: dict[tuple[int, int], torch.Tensor] = {}
    for s, e in reversed(sweep_order(scan.reverse, tiles)):
        residual = scan_residuals.get((s, e))
        if twin is not None and residual is None and twin.deferred.get((s, e)) is not None:
            raise RuntimeError("a twin deferred a tile that this scan cannot pull back through its mixer's VJP")
        if residual is not None:
            defer = defer_to is not None and defer_to.get((s, e)) is not None
            with record_function("pgf::backward"):
                tile_bar, state_bar = scan.tile_vjp(x[:, s:e], tuple(t.to(x.device) for t in scan_starts[(s, e)]),
                                                    residual, cotangent[:, s:e], state_bar, backend,
                                                    None if twin is None else twin.of((s, e)), defer)
            if isinstance(tile_bar, ProjectionCotangent):
                deferred[(s, e)] = tile_bar.value
            else:
                x_bar[:, s:e] += tile_bar
            counter.step()
            continue
        x_tile = x[:, s:e].detach().requires_grad_(True)
        state = tuple(t.to(x.device).detach().requires_grad_(True) for t in scan_starts[(s, e)])
        with torch.enable_grad(), record_function("pgf::recompute"):
            out, new_state = scan.tile(x_tile, state, backend)
        outputs, grad_outputs = [out], [cotangent[:, s:e].to(out.dtype)]
        if state_bar is not None:
            outputs += list(new_state)
            grad_outputs += list(state_bar)
        with record_function("pgf::backward"):
            grads = torch.autograd.grad(outputs, [x_tile, *state], grad_outputs, allow_unused=True)
        x_bar[:, s:e] += grads[0]
        state_bar = tuple(torch.zeros_like(t) if g is None else g for t, g in zip(state, grads[1:]))
        counter.step()
    return deferred
