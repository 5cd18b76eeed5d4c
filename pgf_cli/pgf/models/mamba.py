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
`backend` the engine passes to each tile call chooses). For the adjoint, a tile
keeps its scan's chunk starts and, when memory allows, in_proj's output
(`MambaResidual`); a weight-tied BiMamba's two directions keep that output once
and pull back through in_proj in one product (`Twin`).

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

from pgf.engine.protocol import (
    SUM,
    Backend,
    Combine,
    Mixer,
    MixerDefaults,
    Pointwise,
    ProjectionCotangent,
    Scan,
    Twin,
    identity,
)
from pgf_kernels import ScanResidual, causal_conv1d, selective_scan, selective_scan_saving, selective_scan_vjp


class MixerState(NamedTuple):
    """What a causal mixer carries from one tile to the next (a tuple: the engine's ScanState)."""

    conv: torch.Tensor  # (b, E, d_conv - 1): the last conv inputs before the tile
    ssm: torch.Tensor  # (b, E, N): the scan state, fp32 (or fp64)


class MambaResidual(NamedTuple):
    """What a Mamba-1 tile keeps for its VJP: the scan's chunk-start states, and in_proj's output
    (x before the conv and the gate z, (b, T, E) each), or None (slim: in_proj runs again;
    `from_twin`: the tied twin mixer's, see `twin_projection`)."""

    scan: ScanResidual
    x: torch.Tensor | None = None
    z: torch.Tensor | None = None
    from_twin: bool = False

    def slim(self) -> MambaResidual:
        return MambaResidual(self.scan)


def twin_projection(twin: Twin | None, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """in_proj's output (x, z) for this tile read from a tied twin mixer's residual (flipped over
    length when the twin read the tile the other way), or None when the twin kept none."""
    residual = None if twin is None else twin.residual
    if not isinstance(residual, MambaResidual) or residual.x is None:
        return None
    return twin.oriented(residual.x.to(device)), twin.oriented(residual.z.to(device))


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

    def _project(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """in_proj's output for a tile: the conv's input x and the gate z, (b, T, E) each."""
        # two products, so x and z come out contiguous (the conv and scan kernels would otherwise
        # copy each half of one (b, T, 2E) output)
        weight, bias = self.in_proj.weight, self.in_proj.bias
        E = self.d_inner
        x = F.linear(hidden, weight[:E], None if bias is None else bias[:E])
        z = F.linear(hidden, weight[E:], None if bias is None else bias[E:])
        return x, z

    def _scan_inputs(self, x: torch.Tensor, z: torch.Tensor, conv_tail: torch.Tensor, backend: Backend):
        """From in_proj's output (x, z) and the carried conv tail to (x, delta, A, B, C, z) for the
        scan, and the conv state after the tile."""
        # the conv state after the tile: its last K-1 inputs (a copy, not a view: a saved state
        # must not keep the whole tile alive)
        recent = torch.cat([conv_tail.to(x.dtype), x[:, max(0, x.shape[1] - (self.d_conv - 1)) :].transpose(1, 2)], dim=2)
        conv_state = recent[..., recent.shape[2] - (self.d_conv - 1) :].clone()
        x = causal_conv1d(x, conv_tail, self.conv1d.weight.squeeze(1), self.conv1d.bias, backend=backend)  # silu(conv)
        dt_low, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt_low))
        A = -torch.exp(self.A_log.to(torch.promote_types(self.A_log.dtype, torch.float32)))
        return (x, delta, A, B, C, z), conv_state

    def forward_tile(self, hidden: torch.Tensor, state: MixerState,
                     backend: Backend = None) -> tuple[torch.Tensor, MixerState]:
        """One tile (b, T, d_model) from the carried state -> (out (b, T, d_model), state after the tile)."""
        state = MixerState(*state)
        (x, delta, A, B, C, z), conv_state = self._scan_inputs(*self._project(hidden), state.conv, backend)
        y, ssm_state = selective_scan(x, delta, A, B, C, self.D, z, h0=state.ssm, backend=backend)
        return self.out_proj(y.to(hidden.dtype)), MixerState(conv=conv_state, ssm=ssm_state)

    def forward_tile_saving(self, hidden: torch.Tensor, state: MixerState, backend: Backend = None,
                            twin: Twin | None = None) -> tuple[torch.Tensor, MixerState, MambaResidual | None]:
        """`forward_tile` (no autograd), and the residual `tile_vjp` needs to pull cotangents back
        through this tile without running its scan again: the scan's chunk starts and in_proj's
        output, or (when a tied `twin` kept it for the same input) a reference to the twin's.
        None with the reference scan (the adjoint recomputes the tile instead)."""
        state = MixerState(*state)
        with torch.no_grad():
            projection = twin_projection(twin, hidden.device)
            kept = projection is None
            if kept:
                projection = self._project(hidden)
            (x, delta, A, B, C, z), conv_state = self._scan_inputs(*projection, state.conv, backend)
            y, ssm_state, scan_residual = selective_scan_saving(x, delta, A, B, C, self.D, z, h0=state.ssm,
                                                                backend=backend)
            out = self.out_proj(y.to(hidden.dtype))
        residual = None
        if scan_residual is not None:
            residual = MambaResidual(scan_residual, *projection) if kept else MambaResidual(scan_residual, from_twin=True)
        return out, MixerState(conv=conv_state, ssm=ssm_state), residual

    def tile_vjp(self, hidden: torch.Tensor, state: MixerState, residual: MambaResidual, out_bar: torch.Tensor,
                 state_bar: MixerState | None, backend: Backend = None, twin: Twin | None = None,
                 defer: bool = False) -> tuple[torch.Tensor | ProjectionCotangent, MixerState]:
        """(d/d hidden, d/d state) of <out_bar, out> + <state_bar, state after> for the tile that gave
        `residual`: the parts between in_proj and the scan are recomputed under autograd from
        in_proj's kept output (its own, or its twin's: `from_twin`; else in_proj runs again, slim
        residual), the scan is not (its adjoint kernel starts from the residual's chunk states);
        out_proj is pulled back as out_bar · W_out, in_proj as its cotangent · W_in, once for this
        tile and its twin's when the twin deferred its own (`Twin.deferred`); with `defer` and
        in_proj's output kept, the cotangent is returned before that product (`ProjectionCotangent`)."""
        state = MixerState(*state)
        projection = (residual.x, residual.z) if residual.x is not None else None
        if residual.from_twin:
            projection = twin_projection(twin, hidden.device)
            if projection is None:
                raise ValueError("this residual refers to its twin's in_proj output: pass the same twin as when it was made")
        kept = projection is not None
        with torch.enable_grad():
            conv_in = state.conv.detach().requires_grad_(True)
            if kept:
                leaf = projection[0].to(hidden.device).detach().requires_grad_(True)
                projected = (leaf, projection[1].to(hidden.device))
            else:
                leaf = hidden.detach().requires_grad_(True)
                projected = self._project(leaf)
            (x, delta, A, B, C, z), conv_state = self._scan_inputs(*projected, conv_in, backend)
        dy = (out_bar.to(self.out_proj.weight.dtype) @ self.out_proj.weight).to(x.dtype)
        ssm_bar = None if state_bar is None else MixerState(*state_bar).ssm
        dx, ddelta, dB, dC, dz, dh0 = selective_scan_vjp(residual.scan, x.detach(), delta.detach(), A, B.detach(),
                                                         C.detach(), self.D, z.detach(), dy, ssm_bar)
        outputs, grads = [x, delta, B, C], [dx, ddelta, dB, dC]
        if not kept:  # z is in_proj's output here, so its cotangent goes back through autograd
            outputs.append(z)
            grads.append(dz)
        if state_bar is not None:
            outputs.append(conv_state)
            grads.append(MixerState(*state_bar).conv)
        leaf_bar, conv_bar = torch.autograd.grad(outputs, [leaf, conv_in], grads, allow_unused=True)
        if leaf_bar is None:
            leaf_bar = torch.zeros_like(leaf)
        state_bar_before = MixerState(conv=torch.zeros_like(conv_in) if conv_bar is None else conv_bar, ssm=dh0)
        twin_bar = None if twin is None else twin.deferred_cotangent()
        if not kept:  # leaf_bar is hidden's cotangent already
            if twin_bar is not None:
                leaf_bar = leaf_bar + self._in_proj_vjp(twin_bar, hidden.dtype)
            return leaf_bar, state_bar_before
        projected_bar = torch.cat([leaf_bar, dz.to(leaf_bar.dtype)], dim=-1)
        if twin_bar is not None:
            projected_bar = projected_bar + twin_bar.to(projected_bar.dtype)
        if defer:
            return ProjectionCotangent(projected_bar), state_bar_before
        return self._in_proj_vjp(projected_bar, hidden.dtype), state_bar_before

    def _in_proj_vjp(self, projected_bar: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """hidden's cotangent from in_proj's output's (x's then z's, (b, T, 2E)): projected_bar · W_in."""
        return (projected_bar.to(self.in_proj.weight.dtype) @ self.in_proj.weight).to(dtype)

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
