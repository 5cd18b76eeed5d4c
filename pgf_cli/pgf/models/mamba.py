"""Mamba-1 mixer and its bidirectional (BiMamba) form, as tile functions.

A causal mixer couples positions only through a carried `MixerState` (the
causal-conv tail and the scan state), so one tile is a pure function

    forward_tile(hidden_tile, state) -> (out_tile, state')

and running tiles left to right from `zero_state` equals the whole-sequence
forward. The anti-causal (reverse) direction is the same function applied to
the flipped sequence, i.e. tiles taken right to left in genome coordinates.

Parameter names follow the mamba_ssm `Mamba` module (in_proj, conv1d, x_proj,
dt_proj, A_log, D, out_proj) so published state dicts map one to one. The
causal conv + SiLU and the selective scan go through `pgf_kernels.causal_conv1d` and
`pgf_kernels.selective_scan` (compiled kernels or the PyTorch references: the
`backend` the engine passes to each tile call chooses).

`BiMambaMixer` wraps any `Mixer` (Mamba-1 here; a Mamba-2 mixer plugs in the same
way) into a causal and an anti-causal scan joined by a typed `Combine`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pgf.engine.protocol import SUM, Backend, Combine, Mixer, MixerDefaults, Pointwise, Scan, Twin, identity
from pgf_kernels import causal_conv1d, selective_scan, selective_scan_saving, selective_scan_vjp


class MixerState(NamedTuple):
    """What a causal mixer carries from one tile to the next (a tuple: the engine's ScanState)."""

    conv: torch.Tensor  # (b, E, d_conv - 1): the last conv inputs before the tile
    ssm: torch.Tensor  # (b, E, N): the scan state, fp32 (or fp64)


class MambaMixer(MixerDefaults, nn.Module):
    """One causal selective-SSM mixer: (b, L, d_model) -> (b, L, d_model); a `pgf.engine.Mixer`."""

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

    def zero_state(self, batch: int, like: torch.Tensor) -> MixerState:
        """The state before the first position (zero conv tail, zero scan state)."""
        state_dtype = torch.promote_types(like.dtype, torch.float32)
        return MixerState(
            conv=like.new_zeros(batch, self.d_inner, self.d_conv - 1),
            ssm=torch.zeros(batch, self.d_inner, self.d_state, dtype=state_dtype, device=like.device),
        )

    def _scan_inputs(self, hidden: torch.Tensor, state: MixerState, backend: Backend):
        """The tile's pointwise part: (x, delta, A, B, C, z) for the scan, and the conv state after it."""
        # in_proj as two products, so x and z come out contiguous (the conv and scan kernels would
        # otherwise copy each half of one (b, T, 2E) output)
        weight, bias = self.in_proj.weight, self.in_proj.bias
        E = self.d_inner
        x = F.linear(hidden, weight[:E], None if bias is None else bias[:E])
        z = F.linear(hidden, weight[E:], None if bias is None else bias[E:])
        # the conv state after the tile: its last K-1 inputs (a copy, not a view: a saved state
        # must not keep the whole tile alive)
        recent = torch.cat([state.conv.to(x.dtype), x[:, max(0, x.shape[1] - (self.d_conv - 1)) :].transpose(1, 2)], dim=2)
        conv_state = recent[..., recent.shape[2] - (self.d_conv - 1) :].clone()
        x = causal_conv1d(x, state.conv, self.conv1d.weight.squeeze(1), self.conv1d.bias, backend=backend)  # silu(conv)
        dt_low, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt_low))
        A = -torch.exp(self.A_log.to(torch.promote_types(self.A_log.dtype, torch.float32)))
        return (x, delta, A, B, C, z), conv_state

    def forward_tile(self, hidden: torch.Tensor, state: MixerState,
                     backend: Backend = None) -> tuple[torch.Tensor, MixerState]:
        """One tile (b, T, d_model) from the carried state -> (out (b, T, d_model), state after the tile)."""
        state = MixerState(*state)
        (x, delta, A, B, C, z), conv_state = self._scan_inputs(hidden, state, backend)
        y, ssm_state = selective_scan(x, delta, A, B, C, self.D, z, h0=state.ssm, backend=backend)
        return self.out_proj(y.to(hidden.dtype)), MixerState(conv=conv_state, ssm=ssm_state)

    def forward_tile_saving(self, hidden: torch.Tensor, state: MixerState, backend: Backend = None,
                            twin: Twin | None = None):
        """`forward_tile` (no autograd), and the residual `tile_vjp` needs to pull cotangents back
        through this tile without running its scan again (None with the reference scan). Nothing
        of a `twin`'s is reused: the residual keeps no projection."""
        state = MixerState(*state)
        with torch.no_grad():
            (x, delta, A, B, C, z), conv_state = self._scan_inputs(hidden, state, backend)
            y, ssm_state, residual = selective_scan_saving(x, delta, A, B, C, self.D, z, h0=state.ssm, backend=backend)
            out = self.out_proj(y.to(hidden.dtype))
        return out, MixerState(conv=conv_state, ssm=ssm_state), residual

    def tile_vjp(self, hidden: torch.Tensor, state: MixerState, residual, out_bar: torch.Tensor,
                 state_bar: MixerState | None, backend: Backend = None, twin: Twin | None = None,
                 defer: bool = False) -> tuple[torch.Tensor, MixerState]:
        """(d/d hidden, d/d state) of <out_bar, out> + <state_bar, state after> for the tile that gave
        `residual`: the pointwise parts are recomputed under autograd, the scan is not (its adjoint
        kernel starts from the residual's chunk states); out = out_proj(y) is linear in y. A `twin`
        is not used and nothing is deferred (the residual keeps no projection)."""
        state = MixerState(*state)
        with torch.enable_grad():
            hidden = hidden.detach().requires_grad_(True)
            conv_in = state.conv.detach().requires_grad_(True)
            (x, delta, A, B, C, z), conv_state = self._scan_inputs(hidden, MixerState(conv_in, state.ssm), backend)
        dy = (out_bar.to(self.out_proj.weight.dtype) @ self.out_proj.weight).to(x.dtype)
        ssm_bar = None if state_bar is None else MixerState(*state_bar).ssm
        dx, ddelta, dB, dC, dz, dh0 = selective_scan_vjp(residual, x.detach(), delta.detach(), A, B.detach(),
                                                         C.detach(), self.D, z.detach(), dy, ssm_bar)
        outputs, grads = [x, delta, B, C, z], [dx, ddelta, dB, dC, dz]
        if state_bar is not None:
            outputs.append(conv_state)
            grads.append(MixerState(*state_bar).conv)
        hidden_bar, conv_bar = torch.autograd.grad(outputs, [hidden, conv_in], grads, allow_unused=True)
        return hidden_bar, MixerState(conv=torch.zeros_like(conv_in) if conv_bar is None else conv_bar, ssm=dh0)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Whole sequence (b, L, d_model) from the zero state."""
        return self.forward_tile(hidden, self.zero_state(hidden.shape[0], hidden))[0]


class BiMambaMixer(nn.Module):
    """Forward mixer plus an anti-causal one run on the flipped sequence.

    strategy "add": out = fwd(h) + flip(rev(flip(h))); "ew_multiply": their
    product. With `weight_tie` the reverse mixer shares in_proj and out_proj.
    With `bidirectional=False` only the forward (causal) mixer exists.
    `mixer_type(d_model, **mixer_kwargs)` builds each direction's mixer (any `Mixer`
    with in_proj and out_proj; Mamba-1 by default).
    """

    def __init__(
        self,
        d_model: int,
        strategy: str = "add",
        weight_tie: bool = True,
        bidirectional: bool = True,
        mixer_type: Callable[..., Mixer] = MambaMixer,
        **mixer_kwargs,
    ):
        super().__init__()
        if strategy not in ("add", "ew_multiply"):
            raise ValueError(f"unknown bidirectional strategy {strategy!r}")
        self.strategy = strategy
        self.bidirectional = bidirectional
        self.weight_tie = weight_tie and bidirectional
        self.mamba_fwd = mixer_type(d_model, **mixer_kwargs)
        self.mamba_rev = mixer_type(d_model, **mixer_kwargs) if bidirectional else None
        if self.weight_tie:
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

    def scans(self, prepare: Pointwise = identity, place: Pointwise = identity,
              channels: tuple[int, int] | None = None, first: int = 0) -> list[Scan]:
        """The causal forward scan, and the anti-causal reverse scan when there is one (`Scan`
        fields), as scans `first` and `first + 1` of their layer (with tied weights the second is
        the first's `twin`)."""
        scans = [Scan(self.mamba_fwd, reverse=False, prepare=prepare, place=place, channels=channels)]
        if self.mamba_rev is not None:
            scans.append(Scan(self.mamba_rev, reverse=True, prepare=prepare, place=place, channels=channels,
                              twin=first if self.weight_tie else None))
        return scans


def pair_combine(mixer: BiMambaMixer, n_scans: int) -> Combine:
    """How a layer built from BiMamba scans (in (fwd, rev) order per group) combines them."""
    if mixer.mamba_rev is None or mixer.strategy == "add":
        return SUM
    return Combine(pairs=tuple((i, i + 1) for i in range(0, n_scans, 2)))
