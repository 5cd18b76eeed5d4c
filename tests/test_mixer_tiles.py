"""Tile-by-tile equals whole-sequence for the causal mixer and both BiMamba directions."""

import pytest
import torch

from pgf.models.mamba import BiMambaMixer, MambaMixer
from mixers import bimamba as whole, bimamba_tiled, forward_tiled


@pytest.fixture(scope="module")
def bimamba():
    torch.manual_seed(0)
    mixer = BiMambaMixer(16, d_state=8, weight_tie=True)
    with torch.no_grad():  # make the decays and the conv matter
        for direction in (mixer.mamba_fwd, mixer.mamba_rev):
            direction.dt_proj.bias.add_(1.0)
            direction.conv1d.weight.mul_(3.0)
    return mixer.eval()


@pytest.mark.parametrize("L", [1, 63, 1000])
@pytest.mark.parametrize("tile", [1, 7, 64])
def test_tiles_equal_whole_sequence_fp32(bimamba, L, tile):
    torch.manual_seed(L)
    hidden = torch.randn(2, L, 16)
    with torch.no_grad():
        forward_whole = bimamba.mamba_fwd(hidden)
        reverse_whole = bimamba.mamba_rev(hidden.flip(1)).flip(1)
        forward_in_tiles = forward_tiled(bimamba.mamba_fwd, hidden, tile)
        reverse_tiled = forward_tiled(bimamba.mamba_rev, hidden.flip(1), tile).flip(1)
        both_tiled = bimamba_tiled(bimamba, hidden, tile)
    scale = forward_whole.abs().max()
    assert scale > 1e-2
    assert (forward_in_tiles - forward_whole).abs().max() <= 1e-6 * max(1.0, float(scale))
    assert (reverse_tiled - reverse_whole).abs().max() <= 1e-6 * max(1.0, float(reverse_whole.abs().max()))
    torch.testing.assert_close(both_tiled, whole(bimamba, hidden), rtol=1e-6, atol=1e-6)


def test_state_after_tiles_carries_the_conv_tail():
    torch.manual_seed(1)
    mixer = MambaMixer(8, d_state=4).double()
    hidden = torch.randn(1, 10, 8, dtype=torch.float64)
    state = mixer.zero_state(1, hidden)
    _, state = mixer.forward_tile(hidden[:, :2], state)  # shorter than the conv tail (3)
    assert state.conv.shape == (1, 16, 3)
    x_first_two = mixer.in_proj(hidden[:, :2]).chunk(2, dim=-1)[0].transpose(1, 2)
    torch.testing.assert_close(state.conv[..., 1:], x_first_two)
    torch.testing.assert_close(state.conv[..., 0], torch.zeros(1, 16, dtype=torch.float64))
    rest, _ = mixer.forward_tile(hidden[:, 2:], state)
    torch.testing.assert_close(rest, mixer(hidden)[:, 2:], rtol=1e-12, atol=1e-12)


def test_carried_conv_state_does_not_pin_the_tile():
    """A saved tile-start state must own its few bytes, not view the whole tile's buffers."""
    mixer = MambaMixer(8, d_state=4)
    hidden = torch.randn(1, 512, 8)
    with torch.no_grad():
        _, state = mixer.forward_tile(hidden, mixer.zero_state(1, hidden))
    for tensor in (state.conv, state.ssm):
        assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
