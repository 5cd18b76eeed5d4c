"""Pure-PyTorch selective scan with state in and state out (the reference).

Layout (batch first, as at every module boundary):
    x, delta, z : (b, L, E)     B, C : (b, L, N)     A : (E, N)     D : (E,)
    h0, h_last  : (b, E, N)

Recurrence (Mamba-1):  h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * x_t
                       y_t = C_t . h_t + D * x_t ;   y = y * silu(z) when z is given

Computed in two levels so that the Python loop is ~2*sqrt(L) steps instead of L:
chunk-local scans from a zero state (all chunks at once), a short sequential
pass over chunk-start states, then a fix-up that adds the decayed start state.
Only products of decays <= 1 are formed (exp of a non-positive cumulative
log-decay), never a division by a cumulative decay.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def selective_scan_ref(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (y (b, L, E), h_last (b, E, N)) of the selective scan from state h0.

    Arithmetic is done in the dtype of the inputs promoted to at least fp32.
    `chunk` only changes the order of work, never the result beyond rounding.
    """
    b, L, E = x.shape
    N = A.shape[1]
    out_dtype = x.dtype
    work = torch.promote_types(x.dtype, torch.float32)
    x, delta, A, B, C = (t.to(work) for t in (x, delta, A, B, C))
    h_start = torch.zeros(b, E, N, dtype=work, device=x.device) if h0 is None else h0.to(work)
    if L == 0:
        return x.new_zeros(b, 0, E).to(out_dtype), h_start

    T = chunk if chunk is not None else max(1, math.isqrt(L))
    pad = (-L) % T
    n_chunks = (L + pad) // T

    def time_major(t: torch.Tensor) -> torch.Tensor:
        """(b, L, k) -> (T, b, n_chunks, k), contiguous, padded with zeros; padded
        steps keep the state (decay exp(0) = 1, no input)."""
        if pad:
            t = F.pad(t, (0, 0, 0, pad))
        return t.reshape(b, n_chunks, T, t.shape[-1]).permute(2, 0, 1, 3).contiguous()

    # Work in (T, b, n_chunks, E, N) so that every step of the loops below reads and
    # writes contiguous memory.
    delta_tm = time_major(delta)
    log_decay = delta_tm.unsqueeze(-1) * A  # <= 0 for A < 0
    drive = (delta_tm * time_major(x)).unsqueeze(-1) * time_major(B).unsqueeze(3)

    # Loops take slices with unbind, never by indexing: the backward of an index into
    # a large tensor writes a full-size zero gradient per step (quadratic in L).
    # 1. chunk-local states from a zero start, all chunks at once
    local = []
    h = torch.zeros(b, n_chunks, E, N, dtype=work, device=x.device)
    for decay_t, drive_t in zip(torch.exp(log_decay).unbind(0), drive.unbind(0)):
        h = decay_t * h + drive_t
        local.append(h)
    local_states = torch.stack(local, dim=0)  # (T, b, n_chunks, E, N)

    # 2. sequential pass over chunk-start states. A is constant in time, so the
    # cumulative log-decay is (cumulative delta) x A: a cumsum over (.., E) instead of
    # (.., E, N), N times less work for the scan's costliest op (and its backward).
    cum_log_decay = torch.cumsum(delta_tm, dim=0).unsqueeze(-1) * A  # non-positive, non-increasing
    chunk_decay = torch.exp(cum_log_decay[-1])
    starts = []
    carry = h_start
    for decay_c, end_c in zip(chunk_decay.unbind(1), local[-1].unbind(1)):
        starts.append(carry)
        carry = decay_c * carry + end_c
    chunk_starts = torch.stack(starts, dim=1)  # (b, n_chunks, E, N)

    # 3. fix-up: add each chunk's start state, decayed to every position; read out
    states = local_states + torch.exp(cum_log_decay) * chunk_starts
    y_tm = torch.einsum("tbcen,tbcn->tbce", states, time_major(C))
    y = y_tm.permute(1, 2, 0, 3).reshape(b, L + pad, E)[:, :L]
    if D is not None:
        y = y + D.to(work) * x
    if z is not None:
        y = y * F.silu(z.to(work))
    return y.to(out_dtype), carry


def selective_scan_loop(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step-by-step scan, one position at a time: the plainest statement of the
    recurrence, used to test `selective_scan_ref` (slow; small L only)."""
    b, L, E = x.shape
    N = A.shape[1]
    h = torch.zeros(b, E, N, dtype=x.dtype, device=x.device) if h0 is None else h0.to(x.dtype)
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * x[:, t])[..., None] * B[:, t, None, :]
        ys.append(torch.einsum("ben,bn->be", h, C[:, t]))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(b, 0, E)
    if D is not None:
        y = y + D * x
    if z is not None:
        y = y * F.silu(z)
    return y, h
