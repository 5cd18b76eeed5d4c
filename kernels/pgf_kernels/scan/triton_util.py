"""What the selective scan's Triton kernels and launchers share: block sizes, shape checks,
strides, and the combine functions of its associative scans."""

from __future__ import annotations

import functools

import torch
import triton


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def default_chunk(device: torch.device) -> int:
    """Positions per chunk. On CUDA a chunk's [chunk, BLOCK_E, N] states stay in registers;
    in the interpreter (CPU) short chunks waste less padding on short tiles."""
    return 64 if device.type == "cuda" else 16


@functools.lru_cache(maxsize=None)
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def config(device: torch.device, E: int, N: int, chunk: int, n_chunks: int, K: int = 1, blocks: dict | None = None) -> dict:
    """Block sizes (powers of two), warps, and the program count the adjoint aims for.

    On CUDA a chunk block [T, BLOCK_E, N] ([T, BLOCK_K, BLOCK_E, N] for tangents) is sized to
    stay in registers (untuned guesses: `blocks` overrides any of them, e.g. from
    bench/kernel_scan.py --blocks). In the interpreter bigger blocks mean fewer programs and
    less Python. Tests use `blocks` to force several E-, K- and chunk blocks."""
    BN, BT = _pow2(N), _pow2(chunk)
    if device.type == "cuda":
        BK = min(_pow2(K), 2)
        cfg = {
            "fwd_e": min(_pow2(E), max(1, 8192 // (BT * BN))),
            "bwd_e": min(_pow2(E), max(1, 4096 // (BT * BN))),
            "tan_e": min(_pow2(E), max(1, 4096 // (BT * BK * BN))),
            "k": BK,
            "carry_e": min(_pow2(E), max(1, 256 // BN)),
            "carry_c": min(_pow2(n_chunks), 16),
            "warps_fwd": 8,
            "warps_bwd": 4,
            "warps_tan": 4,
            "warps_carry": 4,
            "programs": 8 * _multiprocessors(device.index if device.index is not None else torch.cuda.current_device()),
            "bwd_groups": 0,
        }
    else:
        cfg = {
            "fwd_e": min(_pow2(E), 64),
            "bwd_e": min(_pow2(E), 64),
            "tan_e": min(_pow2(E), 64),
            "k": min(_pow2(K), 16),
            "carry_e": min(_pow2(E), 64),
            "carry_c": min(_pow2(n_chunks), 64),
            "warps_fwd": 1,
            "warps_bwd": 1,
            "warps_tan": 1,
            "warps_carry": 1,
            "programs": 1,
            "bwd_groups": 0,
        }
    for key, value in (blocks or {}).items():
        if key not in cfg:
            raise KeyError(f"unknown block setting {key!r}; known: {', '.join(cfg)}")
        if key not in ("programs", "bwd_groups") and (value < 1 or value & (value - 1)):
            raise ValueError(f"block setting {key} must be a power of two, got {value}")
        cfg[key] = value
    cfg["n"], cfg["t"] = BN, BT
    return cfg


def strides3(t: torch.Tensor | None) -> tuple[int, int, int]:
    return tuple(t.stride()) if t is not None else (0, 0, 0)


def strides4(t: torch.Tensor | None) -> tuple[int, int, int, int]:
    return tuple(t.stride()) if t is not None else (0, 0, 0, 0)


def check_shapes(x, delta, A, B, C, D, z, h0) -> tuple[int, int, int, int]:
    b, L, E = x.shape
    N = A.shape[1]
    if delta.shape != x.shape or (z is not None and z.shape != x.shape):
        raise ValueError("delta and z must have the shape of x (b, L, E)")
    if A.shape != (E, N) or B.shape != (b, L, N) or C.shape != (b, L, N):
        raise ValueError(f"expected A ({E}, {N}), B and C ({b}, {L}, {N}); got {tuple(A.shape)}, {tuple(B.shape)}, {tuple(C.shape)}")
    if D is not None and D.shape != (E,):
        raise ValueError(f"expected D ({E},), got {tuple(D.shape)}")
    if h0 is not None and h0.shape != (b, E, N):
        raise ValueError(f"expected h0 ({b}, {E}, {N}), got {tuple(h0.shape)}")
    return b, L, E, N


# ----------------------------------------------------------------------------------------------
# device functions


@triton.jit
def affine_combine(a1, b1, a2, b2):
    """(a1, b1) then (a2, b2), as maps h -> a h + b: h -> a2 (a1 h + b1) + b2."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def tangent_combine(p1, q1, l1, m1, p2, q2, l2, m2):
    """Chunk maps on (h, h'): h -> p h + l, h' -> p h' + p q h + m; (1) then (2)."""
    return p1 * p2, q1 + q2, p2 * l1 + l2, p2 * m1 + p2 * q2 * l1 + m2
