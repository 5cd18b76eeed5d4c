"""A plain forward sweep over tiles: outputs without gradients.

Causal models stream each tile through all layers (memory O(tile) besides the
outputs); bidirectional models are swept layer by layer (two L x width streams,
a layer's input and output, for additive layers).
"""

from __future__ import annotations

import torch

from pgf.engine.adjoint import DEFAULT_TILE, layer_sweep, map_tiles
from pgf.engine.base import tile_spans
from pgf.engine.tangent import OutputFunction
from pgf.models.base import SequenceModel


def forward_sweep(model: SequenceModel, onehot: torch.Tensor, output: OutputFunction, tile: int | None = None,
                  reference: torch.Tensor | None = None) -> torch.Tensor:
    """output(model outputs) (b, L, C) at `onehot`, layer by layer and tile by tile.

    `reference` (default: `onehot`) is what `output` reads to select bases
    (e.g. the reference allele's log-probability at an alternative sequence).
    """
    tile = tile or DEFAULT_TILE
    L = onehot.shape[1]
    tiles = tile_spans(L, tile)
    reference = onehot if reference is None else reference
    layers = model.tiled_layers()
    if all(not scan.reverse for layer in layers for scan in layer.scans):
        return _stream_causal(model, layers, onehot, output, tiles, reference)
    with torch.no_grad():
        stream = map_tiles(model.embed, onehot, tiles)
        for layer in layers:
            stream = layer_sweep(layer, stream, tiles)
        result = None
        for s, e in tiles:
            out = output(model.head(stream[:, s:e]), reference, s)
            if result is None:
                result = out.new_empty(out.shape[0], L, *out.shape[2:])
            result[:, s:e] = out
    return result


def _stream_causal(model, layers, onehot, output, tiles, reference) -> torch.Tensor:
    result = None
    with torch.no_grad():
        states = None
        for s, e in tiles:
            stream = model.embed(onehot[:, s:e])
            if states is None:
                states = [[scan.zero_state(stream.shape[0], stream) for scan in layer.scans] for layer in layers]
            for layer, layer_states in zip(layers, states):
                contributions = []
                for index, scan in enumerate(layer.scans):
                    out, layer_states[index] = scan.tile(stream, layer_states[index])
                    contributions.append(out)
                stream = layer.combine(stream, contributions)
            out = output(model.head(stream), reference, s)
            if result is None:
                result = out.new_empty(out.shape[0], onehot.shape[1], *out.shape[2:])
            result[:, s:e] = out
    return result
