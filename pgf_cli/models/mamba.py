"""Mamba-1 mixer and its bidirectional (BiMamba) form, whole-sequence forward.

Parameter names follow the mamba_ssm `Mamba` module (in_proj, conv1d, x_proj,
dt_proj, A_log, D, out_proj) so published state dicts map one to one. The
selective scan goes through `pgf_kernels` (the PyTorch reference for now).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pgf_kernels import selective_scan_ref


class MambaMixer(nn.Module):
    """One causal selective-SSM mixer: (b, L, d_model) -> (b, L, d_model)."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        conv_bias: bool = True,
        bias: bool = False,
    ):
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        E, N, R = self.d_inner, d_state, self.dt_rank
        self.in_proj = nn.Linear(d_model, 2 * E, bias=bias)
        self.conv1d = nn.Conv1d(E, E, kernel_size=d_conv, groups=E, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        self.A_log = nn.Parameter(torch.empty(E, N))
        self.D = nn.Parameter(torch.empty(E))
        self.out_proj = nn.Linear(E, d_model, bias=bias)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4) -> None:
        """The usual Mamba initialisation: A = -(1..N) per channel, D = 1, dt log-uniform in [dt_min, dt_max]."""
        E, N = self.A_log.shape
        self.A_log.copy_(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1))
        self.D.fill_(1.0)
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(E) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=dt_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        L = hidden.shape[1]
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        x = self.conv1d(x.transpose(1, 2))[..., :L].transpose(1, 2)  # causal: left padding d_conv-1
        x = F.silu(x)
        dt_low, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt_low))
        A = -torch.exp(self.A_log.float())
        y, _ = selective_scan_ref(x, delta, A, B, C, self.D.float(), z)
        return self.out_proj(y.to(hidden.dtype))


class BiMambaMixer(nn.Module):
    """Forward mixer plus an anti-causal one run on the flipped sequence.

    strategy "add": out = fwd(h) + flip(rev(flip(h))); "ew_multiply": their
    product. With `weight_tie` the reverse mixer shares in_proj and out_proj.
    """

    def __init__(self, d_model: int, strategy: str = "add", weight_tie: bool = True, **mixer_kwargs):
        super().__init__()
        if strategy not in ("add", "ew_multiply"):
            raise ValueError(f"unknown bidirectional strategy {strategy!r}")
        self.strategy = strategy
        self.weight_tie = weight_tie
        self.mamba_fwd = MambaMixer(d_model, **mixer_kwargs)
        self.mamba_rev = MambaMixer(d_model, **mixer_kwargs)
        if weight_tie:
            self.mamba_rev.in_proj = self.mamba_fwd.in_proj
            self.mamba_rev.out_proj = self.mamba_fwd.out_proj

    def tied_parameter_names(self) -> dict[str, str]:
        """Alias -> source names (relative to this module) of tied parameters."""
        if not self.weight_tie:
            return {}
        return {
            f"mamba_rev.{proj}.{p}": f"mamba_fwd.{proj}.{p}"
            for proj in ("in_proj", "out_proj")
            for p, _ in getattr(self.mamba_fwd, proj).named_parameters()
        }

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        forward = self.mamba_fwd(hidden)
        reverse = self.mamba_rev(hidden.flip(1)).flip(1)
        return forward + reverse if self.strategy == "add" else forward * reverse
