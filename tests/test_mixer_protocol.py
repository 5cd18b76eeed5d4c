"""The mixer is a component: any `Mixer` plugs into the bidirectional wrapper and the engine.

A toy linear recurrence (not Mamba) wrapped by `BiMambaMixer(mixer_type=...)`, in both
combination rules, is swept by the tiled engine with autograd's numbers (fp64), at a tile
size that does not divide the length. Its adjoint recomputes tiles (MixerDefaults keeps no residual)."""

import pytest
import torch
from torch import nn

from pgf.engine import AutogradEngine, MixerDefaults, PositionReadout, TiledEngine, TiledLayer
from pgf.models.mamba import BiMambaMixer, pair_combine


class DecayMixer(MixerDefaults, nn.Module):
    """h_t = a * h_{t-1} + W_in u_t;  y_t = W_out h_t (per channel decay a in (0, 1))."""

    def __init__(self, d_model: int):
        super().__init__()
        self.in_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.logit = nn.Parameter(torch.randn(d_model))

    def zero_state(self, batch, like):
        return (like.new_zeros(batch, self.in_proj.out_features),)

    def forward_tile(self, u, state, backend=None):
        (h,) = state
        x, decay, outputs = self.in_proj(u), torch.sigmoid(self.logit), []
        for t in range(u.shape[1]):
            h = decay * h + x[:, t]
            outputs.append(h)
        y = torch.stack(outputs, dim=1) if outputs else x
        return self.out_proj(y), (h,)


class ToyModel(nn.Module):
    def __init__(self, strategy: str):
        super().__init__()
        self.embedding = nn.Linear(4, 6)
        self.mixer = BiMambaMixer(6, strategy=strategy, weight_tie=False, mixer_type=DecayMixer)
        self.norm = nn.LayerNorm(6)
        self.track = nn.Linear(6, 2)

    def embed(self, onehot):
        return self.embedding(onehot)

    def tiled_layers(self):
        scans = self.mixer.scans(prepare=self.norm)
        return [TiledLayer(scans, join=pair_combine(self.mixer, len(scans)))]

    def head(self, stream):
        return {"track": self.track(stream)}


@pytest.mark.parametrize("strategy", ["add", "ew_multiply"])
def test_a_new_mixer_needs_no_engine_change(strategy):
    torch.manual_seed(0)
    model = ToyModel(strategy).double()
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 23)), 4).double()
    readout = PositionReadout(lambda outputs, onehot, offset: outputs["track"])
    expected = AutogradEngine().gradient(model, x, readout)
    got = TiledEngine(tile=5).gradient(model, x, readout)
    torch.testing.assert_close(got.gradient, expected.gradient, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got.target_value, expected.target_value, rtol=1e-10, atol=1e-12)
    forward = TiledEngine(tile=7).forward(model, x, readout)
    torch.testing.assert_close(forward, AutogradEngine().forward(model, x, readout), rtol=1e-10, atol=1e-12)
    assert expected.gradient.abs().sum() > 0
