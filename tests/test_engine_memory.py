"""The engines hold few whole-length tensors: what bounds GPU memory at 10^5-10^6 bp.

A dispatch mode counts the L x width tensors alive at once (views excluded). Layer inputs
that the adjoint engine offloads to host memory on a GPU are kept here as numpy arrays,
which the count does not see, so the CPU run has the GPU run's device-side picture.
"""

import weakref

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from helpers import build, onehot
from pgf.engine import adjoint
from pgf.engine.autograd import AutogradEngine
from pgf.engine.tiled_engine import TiledEngine
from pgf.models.targets import parse_target
from pgf.workflows.effect import output_function


class WholeLengthTensors(TorchDispatchMode):
    """Peak number of live tensors with `length` positions (dim 1) and >= `width` values per position."""

    def __init__(self, length: int, width: int):
        super().__init__()
        self.length, self.width, self.live, self.peak = length, width, 0, 0

    def _released(self) -> None:
        self.live -= 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if (isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[1] == self.length
                    and t.numel() >= t.shape[0] * self.length * self.width and not t._is_view()):
                self.live += 1
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._released)
        return out


class HostCopy:
    """Stands in for a tensor moved to host memory: numpy holds it, out of the count."""

    def __init__(self, t: torch.Tensor):
        self.array = t.numpy().copy()

    def to(self, device, non_blocking=False) -> torch.Tensor:
        return torch.from_numpy(self.array).clone()  # the copy back to the device

    def __getitem__(self, index) -> torch.Tensor:
        return torch.from_numpy(self.array)[index]

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.array.shape)

    @property
    def dtype(self) -> torch.dtype:
        return torch.from_numpy(self.array[:0]).dtype


class HostOffload(adjoint.Offload):
    """Offloading as on a GPU: layer inputs and tile-start states on host."""

    def decide(self, n_layers, stream):
        self.active = True

    def store(self, t):
        return HostCopy(t)


def stream_width(model, x) -> int:
    return model.embed(x[:, :1]).shape[-1]


@pytest.mark.parametrize("kind", ["caduceus-ps", "track-bi"])
def test_adjoint_sweep_holds_three_whole_length_tensors(kind, monkeypatch):
    # the layer's input, the cotangent of its output and the cotangent of its input; one more
    # (e.g. a name still holding the last stream) is 1/3 more memory at 1 Mb
    model, L = build(kind).double(), 600
    x = onehot(L, seed=2)
    target = parse_target("loglik" if model.lm_kind else "sum", model)
    counter = WholeLengthTensors(L, stream_width(model, x))
    monkeypatch.setattr(adjoint, "Offload", HostOffload)
    with counter:
        result = TiledEngine(tile=64).gradient(model, x, target.readout([0]))
    assert counter.peak == 3
    expected = AutogradEngine().gradient(model, x, target.readout([0])).gradient
    scale = expected.abs().max()
    assert scale > 0 and float((result.gradient - expected).abs().max() / scale) < 1e-10


@pytest.mark.parametrize("kind", ["caduceus-ps", "track-bi"])
def test_forward_sweep_holds_two_whole_length_tensors_for_additive_layers(kind):
    model, L = build(kind).double(), 600
    x = onehot(L, seed=2)
    output, _, _ = output_function(model)
    counter = WholeLengthTensors(L, stream_width(model, x))
    with counter:
        swept = TiledEngine(tile=64).forward(model, x, output)
    assert counter.peak == 2  # a layer's input and output, however many scans it has
    whole = TiledEngine(tile=L).forward(model, x, output)
    assert whole.abs().max() > 0 and float((swept - whole).abs().max() / whole.abs().max()) < 1e-10
