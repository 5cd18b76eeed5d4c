"""Whole-sequence and tile-by-tile statements of the Mamba mixers, for tests only."""

import torch


def bimamba(mixer, hidden: torch.Tensor) -> torch.Tensor:
    """A BiMamba mixer over the whole sequence: forward direction joined with the
    reverse direction run on the flipped sequence (sum, or product for ew_multiply)."""
    forward = mixer.mamba_fwd(hidden)
    if mixer.mamba_rev is None:
        return forward
    reverse = mixer.mamba_rev(hidden.flip(1)).flip(1)
    return forward + reverse if mixer.strategy == "add" else forward * reverse


def forward_tiled(mixer, hidden: torch.Tensor, tile: int) -> torch.Tensor:
    """A causal mixer over the sequence tile by tile, carrying its state (equals the whole forward)."""
    state = mixer.zero_state(hidden.shape[0], hidden)
    outputs = []
    for start in range(0, hidden.shape[1], tile):
        out, state = mixer.forward_tile(hidden[:, start : start + tile], state)
        outputs.append(out)
    return torch.cat(outputs, dim=1) if outputs else mixer(hidden)


def bimamba_tiled(mixer, hidden: torch.Tensor, tile: int) -> torch.Tensor:
    """Causal tiles left to right, anti-causal tiles right to left (equals `bimamba`)."""
    forward = forward_tiled(mixer.mamba_fwd, hidden, tile)
    if mixer.mamba_rev is None:
        return forward
    reverse = forward_tiled(mixer.mamba_rev, hidden.flip(1), tile).flip(1)
    return forward + reverse if mixer.strategy == "add" else forward * reverse
