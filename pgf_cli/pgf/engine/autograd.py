"""Plain autograd over the whole sequence: the reference every tiled sweep is tested against.

Stores every activation of every layer at every position, so its memory grows
with L times the model size; fine for short regions and for checking.
"""

from __future__ import annotations

import torch
from torch.func import jvp, vmap

from pgf.engine.base import Engine, GradientResult, check_readout
from pgf.engine.protocol import Backend, whole_forward
from pgf.engine.tile_primitives import frozen


class AutogradEngine(Engine):
    """Whole-sequence autograd; the mixers run the `backend` kernels (None: "auto")."""

    name = "autograd"

    def __init__(self, backend: Backend = None):
        self.backend = backend

    def forward(self, model, onehot, readout, reference=None, progress=None) -> torch.Tensor:
        readout = check_readout(readout)
        reference = onehot if reference is None else reference
        with torch.no_grad():
            result = readout(whole_forward(model, onehot, self.backend), reference, 0)
        if progress:
            progress(1, 1)
        return result

    def tangent(self, model, onehot, directions, readout, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
        readout = check_readout(readout)
        function = lambda x: readout(whole_forward(model, x, self.backend), onehot, 0)  # noqa: E731
        with frozen(model):
            primal, tangent = vmap(lambda d: jvp(function, (onehot,), (d,)), out_dims=(None, 0))(directions.to(onehot.dtype))
        if progress:
            progress(1, 1)
        return primal.detach(), tangent.detach()

    def gradient(self, model, onehot, readout, progress=None) -> GradientResult:
        readout = check_readout(readout)
        inputs = onehot.detach().clone().requires_grad_(True)
        with frozen(model), torch.enable_grad():  # input gradients only, as every engine
            values = readout(whole_forward(model, inputs, self.backend), inputs, 0).flatten(1).sum(dim=1)
            if progress:
                progress(1, 2)
            (gradient,) = torch.autograd.grad(values.sum(), inputs)
        if progress:
            progress(2, 2)
        return GradientResult(gradient=gradient.detach(), target_value=values.detach())

