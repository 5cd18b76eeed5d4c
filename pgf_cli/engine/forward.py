"""A plain forward sweep over tiles: outputs without gradients, in memory bounded by the tile."""

from __future__ import annotations

import torch

from pgf.engine.adjoint import DEFAULT_TILE, map_tiles
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
    tiles = [(s, min(s + tile, L)) for s in range(0, L, tile)]
    reference = onehot if reference is None else reference
    with torch.no_grad():
        stream = map_tiles(model.embed, onehot, tiles)
        for layer in model.tiled_layers():
            contributions = []
            for scan in layer.scans:
                state = scan.zero_state(stream.shape[0], stream)
                pieces = {}
                for s, e in (reversed(tiles) if scan.reverse else tiles):
                    pieces[s], state = scan.tile(stream[:, s:e], state)
                contributions.append(torch.cat([pieces[s] for s, _ in tiles], dim=1))
            stream = layer.combine(stream, contributions)
            del contributions
        result = None
        for s, e in tiles:
            out = output(model.head(stream[:, s:e]), reference, s)
            if result is None:
                result = out.new_empty(out.shape[0], L, *out.shape[2:])
            result[:, s:e] = out
    return result
