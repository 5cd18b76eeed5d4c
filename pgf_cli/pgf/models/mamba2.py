"""The Mamba-2 (SSD) mixer as a tile function, with mamba_ssm's `Mamba2` parameter names.

Per tile (b, T, d_model), from the carried `Mamba2State`:

    in_proj(u) -> z0 (d_mlp) | x0 (d_mlp) | z (d_ssm) | xBC (d_ssm + 2·G·N) | dt (H)
    xBC = silu(causal depthwise conv(xBC)) -> x (d_ssm), B (G·N), C (G·N)
    dt = clamp(softplus(dt + dt_bias), dt_limit);  A = -exp(A_log)      (per head, fp32 or wider)
    S_t = exp(dt_t A_h) S_{t-1} + dt_t x_t B_tᵀ;  y_t = S_t C_t + D_h x_t (head h reads group h // (H/G))
    y = w ⊙ RMSNorm_per_group(y ⊙ silu(z))   (norm_before_gate: w ⊙ RMSNorm_per_group(y) ⊙ silu(z);
                                              rmsnorm false: y ⊙ silu(z))
    out = out_proj(cat(silu(z0) ⊙ x0, y))    (the first part only when d_mlp = d_inner - d_ssm > 0)

The scan runs through `pgf_kernels.ssd_scan` and the conv through `pgf_kernels.causal_conv1d`;
everything else is differentiable torch. The adjoint pulls back through a tile with `tile_vjp`:
everything between in_proj and out_proj is recomputed within the tile (the SSD scan's chunk states
are 2 to 8 times a layer input per position, too many to keep across the sweep), the scan by its
saving forward and hand-written VJP, the rest under autograd; in_proj's output is kept when
memory allows (`Mamba2Residual`; about 4.4 times the layer input), else in_proj runs again;
two mixers sharing in_proj over the same input (a weight-tied BiMamba's directions) compute and
keep it once (`Twin`); the linear projections are pulled back by one matmul each.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pgf.engine.protocol import Backend, MixerDefaults, ProjectionCotangent, Twin
from pgf.models.mamba import MambaMixer
from pgf_kernels import causal_conv1d, ssd_scan, ssd_scan_saving, ssd_scan_vjp


class Mamba2State(NamedTuple):
    """What a Mamba-2 mixer carries from one tile to the next (the engine's ScanState)."""

    conv: torch.Tensor  # (b, conv_dim, d_conv - 1): the last conv inputs before the tile
    ssm: torch.Tensor  # (b, H, P, N): the scan state, fp32 (or fp64)


class _ScanInputs(NamedTuple):
    """One tile's SSD scan inputs (`ssd_scan`'s layout), the gate branches and the conv tail after it."""

    x: torch.Tensor  # (b, T, H, P)
    dt: torch.Tensor  # (b, T, H), softplus'd and clamped, work dtype
    A: torch.Tensor  # (H,)
    B: torch.Tensor  # (b, T, G, N)
    C: torch.Tensor  # (b, T, G, N)
    z: torch.Tensor  # (b, T, d_ssm): the gate
    z0: torch.Tensor  # (b, T, d_mlp)
    x0: torch.Tensor  # (b, T, d_mlp)
    conv_state: torch.Tensor  # (b, conv_dim, d_conv - 1)


class Mamba2Residual(NamedTuple):
    """What a Mamba-2 tile keeps for its VJP: in_proj's output (b, T, d_in_proj), or None (slim:
    in_proj runs again; `from_twin`: the twin mixer's, see `twin_projection`). Its scan is
    recomputed either way (see the module's docstring)."""

    projected: torch.Tensor | None = None
    from_twin: bool = False

    def slim(self) -> Mamba2Residual:
        return Mamba2Residual()


def twin_projection(twin: Twin | None, device: torch.device) -> torch.Tensor | None:
    """in_proj's output for this tile read from a tied twin mixer's residual (flipped over length
    when the twin read the tile the other way), or None when the twin kept none."""
    residual = None if twin is None else twin.residual
    if not isinstance(residual, Mamba2Residual) or residual.projected is None:
        return None
    return twin.oriented(residual.projected.to(device))


def work_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype of the mixer's fp32 parts (dt, A, the gated norm): t's, at least fp32."""
    return torch.promote_types(t.dtype, torch.float32)


class GatedRMSNorm(nn.Module):
    """`norm.weight` of a Mamba-2 mixer: RMSNorm over each group of `group_size` channels, gated by silu(z)."""

    def __init__(self, width: int, group_size: int, eps: float = 1e-5, norm_before_gate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.group_size, self.eps, self.norm_before_gate = group_size, eps, norm_before_gate

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(…, width) in the work dtype -> normalised and gated, same dtype."""
        gate = F.silu(z)
        if not self.norm_before_gate:
            y = y * gate
        groups = y.unflatten(-1, (-1, self.group_size))
        normed = (groups * torch.rsqrt(groups.pow(2).mean(-1, keepdim=True) + self.eps)).flatten(-2)
        normed = normed * self.weight.to(normed.dtype)
        return normed * gate if self.norm_before_gate else normed


class Mamba2Mixer(MixerDefaults, nn.Module):
    """One causal Mamba-2 mixer: (b, L, d_model) -> (b, L, d_model); a `pgf.engine.Mixer`."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        expand: float = 2,
        headdim: int = 64,
        d_ssm: int | None = None,
        ngroups: int = 1,
        rmsnorm: bool = True,
        norm_before_gate: bool = False,
        dt_limit: tuple[float, float] = (0.0, math.inf),
        bias: bool = False,
        conv_bias: bool = True,
        D_has_hdim: bool = False,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.d_ssm = self.d_inner if d_ssm is None else int(d_ssm)
        self.d_mlp = self.d_inner - self.d_ssm
        self.headdim, self.ngroups = headdim, ngroups
        if self.d_mlp < 0 or self.d_ssm % headdim:
            raise ValueError(f"d_ssm {self.d_ssm} must be a multiple of headdim {headdim} and at most "
                             f"expand·d_model = {self.d_inner}")
        self.nheads = self.d_ssm // headdim
        if ngroups < 1 or self.nheads % ngroups:
            raise ValueError(f"ngroups {ngroups} must divide the number of heads ({self.nheads})")
        self.rmsnorm, self.norm_before_gate, self.D_has_hdim = rmsnorm, norm_before_gate, D_has_hdim
        self.dt_limit = (float(dt_limit[0]), float(dt_limit[1]))
        self.conv_dim = self.d_ssm + 2 * ngroups * d_state
        H = self.nheads
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * ngroups * d_state + H, bias=bias)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, kernel_size=d_conv, groups=self.conv_dim,
                                padding=d_conv - 1, bias=conv_bias)
        self.dt_bias = nn.Parameter(torch.empty(H))
        self.A_log = nn.Parameter(torch.empty(H))
        self.D = nn.Parameter(torch.empty(self.d_ssm if D_has_hdim else H))
        if rmsnorm:
            self.norm = GatedRMSNorm(self.d_ssm, self.d_ssm // ngroups, norm_eps, norm_before_gate)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4) -> None:
        """The usual Mamba-2 initialisation: A uniform in [1, 16] per head, D = 1, dt log-uniform."""
        H = self.nheads
        self.A_log.copy_(torch.log(torch.empty(H).uniform_(1, 16)))
        self.D.fill_(1.0)
        dt = torch.exp(torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=dt_floor)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)

    def facts(self) -> str:
        """One line for `pgf models show`."""
        groups = f"{self.ngroups} group{'s' if self.ngroups > 1 else ''}"
        mlp = f", d_mlp {self.d_mlp}" if self.d_mlp else ""
        return f"Mamba-2 (SSD): {self.nheads} heads × {self.headdim}, state {self.d_state}, {groups}{mlp}"

    def zero_state(self, batch: int, like: torch.Tensor) -> Mamba2State:
        """The state before the first position (zero conv tail, zero scan state)."""
        return Mamba2State(
            conv=like.new_zeros(batch, self.conv_dim, self.d_conv - 1),
            ssm=torch.zeros(batch, self.nheads, self.headdim, self.d_state, dtype=work_dtype(like), device=like.device),
        )

    def _conv_tail(self, xBC: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
        """The conv state after the tile: its last d_conv - 1 inputs (a copy, not a view)."""
        K1 = self.d_conv - 1
        recent = torch.cat([tail.to(xBC.dtype), xBC[:, max(0, xBC.shape[1] - K1):].transpose(1, 2)], dim=2)
        return recent[..., recent.shape[2] - K1:].clone()

    def forward_tile(self, u: torch.Tensor, state: Mamba2State, backend: Backend = None) -> tuple[torch.Tensor, Mamba2State]:
        """One tile (b, T, d_model) from the carried state -> (out (b, T, d_model), state after the tile)."""
        y, new_state = self._between_projections(self.in_proj(u), Mamba2State(*state), backend)
        return self.out_proj(y), new_state

    def forward_tile_saving(self, u: torch.Tensor, state: Mamba2State, backend: Backend = None,
                            twin: Twin | None = None) -> tuple[torch.Tensor, Mamba2State, Mamba2Residual]:
        """`forward_tile` (no autograd), and the residual for `tile_vjp`: in_proj's output, or
        (when a tied `twin` kept it for the same input) a reference to the twin's."""
        with torch.no_grad():
            projected = twin_projection(twin, u.device)
            residual = Mamba2Residual(from_twin=True)
            if projected is None:
                projected = self.in_proj(u)
                residual = Mamba2Residual(projected)
            y, new_state = self._between_projections(projected, Mamba2State(*state), backend)
            return self.out_proj(y), new_state, residual

    def tile_vjp(self, u: torch.Tensor, state: Mamba2State, residual: Mamba2Residual, out_bar: torch.Tensor,
                 state_bar: Mamba2State | None, backend: Backend = None, twin: Twin | None = None,
                 defer: bool = False) -> tuple[torch.Tensor | ProjectionCotangent, Mamba2State]:
        """(d/d u, d/d state) of <out_bar, out> + <state_bar, state after> for one tile, in three
        pull-backs: the parts after the scan (gate, norm) under autograd, the scan by its own VJP
        (`ssd_scan_vjp`, from the chunk starts its saving forward keeps), the parts before it (conv,
        softplus) under autograd from in_proj's kept output (its own, or its twin's: `from_twin`;
        else in_proj runs again, slim residual); out_proj pulled back as out_bar · W_out, in_proj
        as its cotangent · W_in, once for this tile and its twin's when the twin deferred its own
        (`Twin.deferred`); with `defer` and in_proj's output kept, the cotangent is returned
        before that product (`ProjectionCotangent`)."""
        state = Mamba2State(*state)
        state_bar = None if state_bar is None else Mamba2State(*state_bar)
        projected = residual.projected.to(u.device) if residual.projected is not None else None
        if residual.from_twin:
            projected = twin_projection(twin, u.device)
            if projected is None:
                raise ValueError("this residual refers to its twin's in_proj output: pass the same twin as when it was made")
        kept = projected is not None
        with torch.enable_grad():
            conv_before = state.conv.detach().requires_grad_(True)
            leaf = (projected if kept else u).detach().requires_grad_(True)
            scan_in = self._scan_inputs(leaf if kept else self.in_proj(leaf), conv_before, backend)
        D = self._scan_D(scan_in.dt.dtype)
        D = None if D is None else D.detach()
        A = scan_in.A.detach()
        y_scan, _, scan_residual = ssd_scan_saving(scan_in.x, scan_in.dt, A, scan_in.B, scan_in.C, D,
                                                   h0=state.ssm, backend=backend, keep_work=True)
        after_in = [t.detach().requires_grad_(True) for t in (y_scan, scan_in.x, scan_in.z, scan_in.z0, scan_in.x0)]
        with torch.enable_grad():
            y = self._after_scan(*after_in)
        y_bar = (out_bar.to(self.out_proj.weight.dtype) @ self.out_proj.weight).to(y.dtype)
        dy, dx_after, dz, dz0, dx0 = torch.autograd.grad(y, after_in, y_bar, allow_unused=True)
        ssm_bar = None if state_bar is None else state_bar.ssm
        dx, ddt, dB, dC, dh0 = ssd_scan_vjp(scan_residual, scan_in.x, scan_in.dt, A, scan_in.B, scan_in.C, D,
                                            dy, ssm_bar, h0=state.ssm, backend=backend)
        if dx_after is not None:
            dx = dx + dx_after
        pairs = [(scan_in.x, dx), (scan_in.dt, ddt), (scan_in.B, dB), (scan_in.C, dC), (scan_in.z, dz),
                 (scan_in.z0, dz0), (scan_in.x0, dx0)]
        if state_bar is not None:
            pairs.append((scan_in.conv_state, state_bar.conv))
        pairs = [(t, g.to(t.dtype)) for t, g in pairs if g is not None and t.requires_grad]
        leaf_bar, conv_bar = torch.autograd.grad([t for t, _ in pairs], [leaf, conv_before], [g for _, g in pairs],
                                                 allow_unused=True)
        if leaf_bar is None:
            leaf_bar = torch.zeros_like(leaf)
        conv_bar = torch.zeros_like(conv_before) if conv_bar is None else conv_bar
        state_bar_before = Mamba2State(conv=conv_bar, ssm=dh0.to(state.ssm.dtype))
        twin_bar = None if twin is None else twin.deferred_cotangent()
        twin_bar = None if twin_bar is None else twin_bar.to(leaf_bar.dtype)
        if not kept:  # leaf_bar is u's cotangent already
            return leaf_bar if twin_bar is None else leaf_bar + self._in_proj_vjp(twin_bar, u.dtype), state_bar_before
        if twin_bar is not None:
            leaf_bar = leaf_bar + twin_bar
        if defer:
            return ProjectionCotangent(leaf_bar), state_bar_before
        return self._in_proj_vjp(leaf_bar, u.dtype), state_bar_before

    def _in_proj_vjp(self, projected_bar: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """u's cotangent from in_proj's output's: projected_bar · W_in (the bias has no say)."""
        return (projected_bar.to(self.in_proj.weight.dtype) @ self.in_proj.weight).to(dtype)

    def _scan_D(self, work: torch.dtype) -> torch.Tensor | None:
        """The scan's skip weight per head (None when D is per channel: added after the scan)."""
        return None if self.D_has_hdim else self.D.to(work)

    def _scan_inputs(self, projected: torch.Tensor, conv_tail: torch.Tensor, backend: Backend) -> _ScanInputs:
        """From in_proj's output (b, T, d_in_proj) and the carried conv tail to the scan's inputs."""
        b, T, _ = projected.shape
        H, P, G, N = self.nheads, self.headdim, self.ngroups, self.d_state
        z0, x0, z, xBC, dt = torch.split(projected, [self.d_mlp, self.d_mlp, self.d_ssm, self.conv_dim, H], dim=-1)
        conv_state = self._conv_tail(xBC, conv_tail)
        xBC = causal_conv1d(xBC, conv_tail, self.conv1d.weight.squeeze(1), self.conv1d.bias, backend=backend)
        xBC = xBC.contiguous()  # the conv may return a channel-major view: the products below want positions outer
        x, B, C = torch.split(xBC, [self.d_ssm, G * N, G * N], dim=-1)
        work = work_dtype(projected)
        dt = F.softplus(dt.to(work) + self.dt_bias.to(work))
        if self.dt_limit != (0.0, math.inf):
            dt = dt.clamp(min=self.dt_limit[0], max=self.dt_limit[1])
        A = -torch.exp(self.A_log.to(work))
        return _ScanInputs(x.reshape(b, T, H, P), dt, A, B.reshape(b, T, G, N), C.reshape(b, T, G, N), z, z0, x0,
                           conv_state)

    def _after_scan(self, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor, z0: torch.Tensor,
                    x0: torch.Tensor) -> torch.Tensor:
        """From the scan's output y (b, T, H, P) to out_proj's input (b, T, d_inner) in z's dtype:
        the per-channel skip, the gated norm and the d_mlp branch."""
        work = work_dtype(z)
        b, T, H, P = y.shape
        y = y.to(work)
        if self.D_has_hdim:
            y = y + x.to(work) * self.D.to(work).reshape(H, P)
        y = y.reshape(b, T, self.d_ssm)
        y = self.norm(y, z.to(work)) if self.rmsnorm else y * F.silu(z.to(work))
        if self.d_mlp:
            y = torch.cat([F.silu(z0.to(work)) * x0.to(work), y], dim=-1)
        return y.to(z.dtype)

    def _between_projections(self, projected: torch.Tensor, state: Mamba2State,
                             backend: Backend) -> tuple[torch.Tensor, Mamba2State]:
        """From in_proj's output (b, T, d_in_proj) to out_proj's input (b, T, d_inner) in its dtype,
        and the state after the tile."""
        s = self._scan_inputs(projected, state.conv, backend)
        y, ssm_state = ssd_scan(s.x, s.dt, s.A, s.B, s.C, self._scan_D(s.dt.dtype), h0=state.ssm, backend=backend)
        return self._after_scan(y, s.x, s.z, s.z0, s.x0), Mamba2State(conv=s.conv_state, ssm=ssm_state)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Whole sequence (b, L, d_model) from the zero state."""
        return self.forward_tile(u, self.zero_state(u.shape[0], u))[0]


def mixer_facts(model: nn.Module) -> list[str]:
    """One line per distinct kind of sequence mixer in `model` (Mamba-1 or Mamba-2), for `pgf models show`."""
    lines: list[str] = []
    for module in model.modules():
        if isinstance(module, Mamba2Mixer):
            line = module.facts()
        elif isinstance(module, MambaMixer):
            line = (f"Mamba-1: {module.d_inner} channels, state {module.d_state}, dt rank {module.dt_rank}, "
                    f"conv {module.d_conv}")
        else:
            continue
        if line not in lines:
            lines.append(line)
    return lines
