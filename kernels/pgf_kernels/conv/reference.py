"""Pure-PyTorch causal depthwise conv1d + SiLU with the inputs before the tile carried in (the reference)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d_ref(
    x: torch.Tensor, tail: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """SiLU of the causal depthwise convolution of x (b, T, E) continuing from `tail` (b, E, K-1),
    the K-1 inputs before the tile: y (b, T, E) with

        y[:, t, e] = silu(bias[e] + sum_k weight[e, k] * u[:, t + k, e]),   u = [tail^T ; x].

    weight (E, K) (a Conv1d's (E, 1, K) weight, squeezed); bias (E,) or None.
    """
    u = torch.cat([tail.to(x.dtype), x.transpose(1, 2)], dim=2)  # (b, E, K-1+T)
    return F.silu(F.conv1d(u, weight.unsqueeze(1), bias, groups=weight.shape[0]).transpose(1, 2))
