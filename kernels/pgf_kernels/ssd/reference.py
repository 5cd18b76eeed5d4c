"""The SSD (Mamba-2) scan step by step in PyTorch: the ground truth every backend is tested against.

Layout (batch first):  x (b, L, H, P); dt (b, L, H); A (H,); B, C (b, L, G, N); D (H,);
h0, h_last (b, H, P, N). Head h reads group g = h // (H // G) of B and C.

    S_t = exp(dt_t A) S_{t-1} + dt_t x_t ⊗ B_t        (S: (P, N) per batch and head; S_0 = h0)
    y_t = S_t C_t + D x_t

One Python step per position (slow for long L; differentiable by plain autograd, forward mode
included). Arithmetic in x's dtype promoted to at least fp32.
"""

from __future__ import annotations

import torch

from pgf_kernels.ssd.shapes import check_shapes, work_dtype


def heads(t: torch.Tensor, H: int) -> torch.Tensor:
    """(..., G, N) -> (..., H, N): each group repeated for its H // G consecutive heads."""
    return t.repeat_interleave(H // t.shape[-2], dim=-2)


def ssd_scan_ref(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y (b, L, H, P) in x's dtype, h_last (b, H, P, N) in the work dtype) from state h0 (None: zeros)."""
    b, L, H, P, G, N = check_shapes(x, dt, A, B, C, D, h0)
    work = work_dtype(x)
    xw, dtw, Aw = x.to(work), dt.to(work), A.to(work)
    Bh, Ch = heads(B.to(work), H), heads(C.to(work), H)
    S = torch.zeros(b, H, P, N, dtype=work, device=x.device) if h0 is None else h0.to(work)
    ys = []
    # unbind, not indexing: the backward of an index writes a full-size gradient per step
    for x_t, dt_t, B_t, C_t in zip(xw.unbind(1), dtw.unbind(1), Bh.unbind(1), Ch.unbind(1)):
        decay = torch.exp(dt_t * Aw)[..., None, None]
        S = decay * S + (dt_t[..., None] * x_t)[..., None] * B_t[:, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", S, C_t))
    y = torch.stack(ys, dim=1) if ys else xw.new_zeros(b, 0, H, P)
    if D is not None:
        y = y + D.to(work)[:, None] * xw
    return y.to(x.dtype), S
