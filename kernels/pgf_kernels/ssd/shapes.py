"""Shape checks and dtypes shared by every backend of the SSD (Mamba-2) scan."""

from __future__ import annotations

import torch


def check_shapes(x, dt, A, B, C, D=None, h0=None) -> tuple[int, int, int, int, int, int]:
    """(b, L, H, P, G, N) of the SSD scan's inputs; a ValueError naming the first mismatch.

    x (b, L, H, P); dt (b, L, H); A (H,); B, C (b, L, G, N) with G dividing H; D (H,); h0 (b, H, P, N)."""
    if x.dim() != 4:
        raise ValueError(f"x must be (b, L, H, P), got shape {tuple(x.shape)}")
    b, L, H, P = x.shape
    if B.dim() != 4:
        raise ValueError(f"B must be (b, L, G, N), got shape {tuple(B.shape)}")
    G, N = B.shape[2], B.shape[3]
    if dt.shape != (b, L, H):
        raise ValueError(f"expected dt ({b}, {L}, {H}), got {tuple(dt.shape)}")
    if A.shape != (H,):
        raise ValueError(f"expected A ({H},), got {tuple(A.shape)}")
    if B.shape != (b, L, G, N) or C.shape != (b, L, G, N):
        raise ValueError(f"expected B and C ({b}, {L}, G, N) alike, got {tuple(B.shape)} and {tuple(C.shape)}")
    if G == 0 or H % G:
        raise ValueError(f"the number of groups ({G}) must divide the number of heads ({H})")
    if D is not None and D.shape != (H,):
        raise ValueError(f"expected D ({H},), got {tuple(D.shape)}")
    if h0 is not None and h0.shape != (b, H, P, N):
        raise ValueError(f"expected h0 ({b}, {H}, {P}, {N}), got {tuple(h0.shape)}")
    return b, L, H, P, G, N


def work_dtype(x: torch.Tensor) -> torch.dtype:
    """The arithmetic (and state) dtype: x's promoted to at least fp32."""
    return torch.promote_types(x.dtype, torch.float32)
