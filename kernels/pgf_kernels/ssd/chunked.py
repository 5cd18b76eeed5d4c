"""The SSD (Mamba-2) scan in its chunked (matrix) form, in plain PyTorch: the fast CPU path.

Within a chunk of T positions, with a_t = sum_{r<=t} dt_r A (the cumulative log-decay, <= 0,
non-increasing) and u_s = dt_s x_s:

    y_t     = sum_{s<=t} exp(a_t - a_s) (C_t . B_s) u_s  +  exp(a_t) S_in C_t  +  D x_t
    S_out   = exp(a_T) S_in  +  sum_s exp(a_T - a_s) u_s ⊗ B_s

The first sum is a (T x T) decay-masked C Bᵀ matrix times u, for all chunks, heads and batch
rows at once (batched matmuls). Only exponents a_t - a_s <= 0 are formed (never exp(a_t) /
exp(a_s), which overflows); that they are <= 0 needs dt >= 0 and A <= 0, as in every Mamba-2.
The state entering each chunk comes from a short sequential pass over chunks. The tail chunk
is padded with dt = 0 (decay 1, no input), which leaves the state unchanged.

Two layouts keep every product a plain batched matmul (no copies inside einsum):
  * position-major (b, nc, G, T, R·P): a group's heads side by side, as x arrives (a view when
    G = 1). The state in and out are (T x N) by (N x R·P) products over all R heads at once.
  * head-major (b, nc, G, R, T, P): one (T x T) by (T x P) product per head, for the sum within
    the chunk (one copy of x).
B and C are (b, nc, G, T, N) and broadcast over a group's heads. Only differentiable torch ops:
autograd, torch.func.jvp and vmap work on it as they are, and it runs on any device. Its
hand-written VJP is `ssd.chunked_vjp`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from pgf_kernels.ssd.shapes import check_shapes, work_dtype

DEFAULT_CHUNK = 64


class Chunked(NamedTuple):
    """The scan's inputs in chunks of T positions, in the work dtype (see the module's layouts)."""

    x: torch.Tensor  # position-major (b, nc, G, T, R, P)
    dt: torch.Tensor  # (b, nc, G, T, R)
    B: torch.Tensor  # (b, nc, G, T, N)
    C: torch.Tensor  # (b, nc, G, T, N)
    a: torch.Tensor  # within-chunk cumulative dt · A, head-major (b, nc, G, R, T)

    @property
    def a_pm(self) -> torch.Tensor:
        """a position-major, (b, nc, G, T, R)."""
        return self.a.transpose(-1, -2)


def chunk_length(chunk: int | None, L: int) -> int:
    """Positions per chunk for a scan of L positions (`chunk` None: the default)."""
    return max(1, min(int(chunk or DEFAULT_CHUNK), L))


def position_major(t: torch.Tensor, G: int, T: int) -> torch.Tensor:
    """(b, L, H, ...) or (b, L, G, N) -> (b, nc, G, T, H / G, ...) or (b, nc, G, T, N): the tail
    chunk padded with zeros; a view when G = 1 and T divides L."""
    b, L = t.shape[:2]
    nc = -(-L // T)
    if nc * T != L:
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, nc * T - L))
    t = t.reshape(b, nc, T, G, t.shape[2] // G, *t.shape[3:])
    return t.movedim(3, 2) if G > 1 else t.squeeze(3).unsqueeze(2)


def from_position_major(t: torch.Tensor, L: int) -> torch.Tensor:
    """(b, nc, G, T, R, ...) -> (b, L, G·R, ...), the padding dropped."""
    b, nc, G, T, R = t.shape[:5]
    t = t.movedim(2, 3) if G > 1 else t.squeeze(2).unsqueeze(3)
    return t.reshape(b, nc * T, G * R, *t.shape[5:])[:, :L]


def chunk_inputs(x, dt, A, B, C, G: int, T: int, work: torch.dtype) -> Chunked:
    """The inputs in the work dtype, cut into ceil(L / T) chunks (the tail padded with zeros)."""
    R = x.shape[2] // G
    xw = position_major(x.to(work), G, T)
    dtw = position_major(dt.to(work), G, T)
    Bw, Cw = (position_major(t.to(work), G, T).squeeze(-2) for t in (B, C))
    a = torch.cumsum(dtw.transpose(-1, -2) * A.to(work).reshape(G, R, 1), dim=-1)
    return Chunked(xw, dtw, Bw.contiguous(), Cw.contiguous(), a)


def within_chunk_decays(a: torch.Tensor) -> torch.Tensor:
    """exp(a_t - a_s) for s <= t, 0 above the diagonal: (..., t, s) from a (..., T).

    Decays below twice the dtype's smallest normal number (about 2e-38 in fp32) are set to 0, as
    flush-to-zero would: on CPU, exp is many times slower where its result is denormal or
    underflows, and stiff heads put most of a chunk there. The exponent is clamped into
    [log(2 tiny), 0] before exp (a is non-increasing, so nothing at or below the diagonal exceeds
    0), and the mask picks what is kept."""
    T = a.shape[-1]
    lowest = math.log(2 * torch.finfo(a.dtype).tiny)
    causal = torch.ones(T, T, dtype=torch.bool, device=a.device).tril()
    diff = a[..., :, None] - a[..., None, :]
    return torch.where((diff >= lowest) & causal, torch.exp(diff.clamp(lowest, 0.0)), 0.0)


def flat(t: torch.Tensor) -> torch.Tensor:
    """(..., R, P) -> (..., R·P)."""
    return t.flatten(-2)


def chunk_starts(c: Chunked, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the state entering each chunk (b, nc, G, R, P, N), the state after the last) from `state`
    (b, G, R, P, N) before the first chunk."""
    b, nc, G, T, R, P = c.x.shape
    to_end = torch.exp(c.a_pm[..., -1:, :] - c.a_pm)  # (b, nc, G, T, R)
    weighted = flat(c.x * (c.dt * to_end)[..., None])  # u_s exp(a_T - a_s), (b, nc, G, T, R·P)
    local = (weighted.mT @ c.B).reshape(b, nc, G, R, P, -1)  # each chunk's end state from a zero start
    chunk_decay = torch.exp(c.a[..., -1])[..., None, None]  # (b, nc, G, R, 1, 1)
    starts = []
    for decay_c, local_c in zip(chunk_decay.unbind(1), local.unbind(1)):
        starts.append(state)
        state = torch.addcmul(local_c, decay_c, state)
    return torch.stack(starts, dim=1), state


class ChunkWork(NamedTuple):
    """What the forward computed within chunks that its VJP needs again, kept by
    `ssd_scan_chunked_saving` for a VJP that follows at once (a tile's worth: the decays are
    R·T values per position, as much as x when T equals the head size)."""

    c: Chunked
    decays: torch.Tensor  # exp(a_t - a_s) below the diagonal, (b, nc, G, R, t, s)
    weights: torch.Tensor  # decays · (C_t . B_s), (b, nc, G, R, t, s)
    CB: torch.Tensor  # C_t . B_s, (b, nc, G, t, s)
    u_heads: torch.Tensor  # dt x head-major, (b, nc, G, R, T, P)


def ssd_scan_chunked_saving(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    chunk: int | None = None,
    keep_work: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, ChunkWork | None]:
    """`ssd_scan_chunked`, the state entering each chunk (b, ceil(L / T), H, P, N) in the work
    dtype (what `ssd_scan_chunked_vjp` can start from instead of recomputing it), and with
    `keep_work` the chunked inputs, decays and C·Bᵀ it would otherwise form again (None else)."""
    b, L, H, P, G, N = check_shapes(x, dt, A, B, C, D, h0)
    work = work_dtype(x)
    R = H // G
    state = (torch.zeros(b, G, R, P, N, dtype=work, device=x.device) if h0 is None
             else h0.to(work).reshape(b, G, R, P, N))
    if L == 0:
        return x.new_zeros(b, 0, H, P), state.reshape(b, H, P, N), state.new_zeros(b, 0, H, P, N), None
    T = chunk_length(chunk, L)
    c = chunk_inputs(x, dt, A, B, C, G, T, work)
    nc = c.x.shape[1]

    u_heads = (c.x * c.dt[..., None]).movedim(4, 3)  # head-major u (b, nc, G, R, T, P)
    CB = c.C @ c.B.mT  # (b, nc, G, t, s)
    decays = within_chunk_decays(c.a)  # (b, nc, G, R, t, s)
    weights = decays * CB[:, :, :, None]
    y_within = weights @ u_heads
    S_in, state = chunk_starts(c, state)
    y = (c.C @ S_in.flatten(3, 4).mT).unflatten(-1, (R, P)) * torch.exp(c.a_pm)[..., None]  # exp(a_t) S_in C_t
    y = from_position_major(y + y_within.movedim(3, 4), L)
    if D is not None:
        y = y + D.to(work)[:, None] * x.to(work)
    kept = ChunkWork(c, decays, weights, CB, u_heads) if keep_work else None
    return y.to(x.dtype), state.reshape(b, H, P, N), S_in.reshape(b, nc, H, P, N), kept


def ssd_scan_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y (b, L, H, P) in x's dtype, h_last (b, H, P, N) in the work dtype), as `ssd_scan_ref`;
    `chunk` (positions per chunk, default 64) changes only the order of work."""
    y, h_last, _, _ = ssd_scan_chunked_saving(x, dt, A, B, C, D, h0, chunk)
    return y, h_last
