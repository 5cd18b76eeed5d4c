"""Plain autograd: the reference every other engine is tested against.

Stores every activation of every layer at every position, so its memory
grows with L times the model size; fine for short regions and for checking.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pgf.engine.base import Engine, GradientResult, Progress
from pgf.models.base import SequenceModel
from pgf.models.targets import Target


class AutogradEngine(Engine):
    name = "autograd"

    def gradient(
        self,
        model: SequenceModel,
        onehot: torch.Tensor,
        target: Target,
        region_starts: Sequence[int],
        progress: Progress | None = None,
    ) -> GradientResult:
        inputs = onehot.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            outputs = model(inputs)
            values = target.contributions(outputs, inputs, region_starts).sum(dim=1)
            if progress:
                progress(1, 2)
            (gradient,) = torch.autograd.grad(values.sum(), inputs)
        if progress:
            progress(2, 2)
        return GradientResult(gradient=gradient.detach(), target_value=values.detach())
