"""What the SSD scan's Triton kernels share: the chunk plan, block sizes, strides, and device
functions (a chunk's rows, its cumulative log-decays, its causal decay matrix, tile loads).

Runs on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 was set before import (slow;
the tests). Compilation for a GPU is not checked on the machines these were written on.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from pgf_kernels.triton_common import exp


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def plan(device: torch.device, L: int, chunk: int | None) -> tuple[int, int]:
    """(positions per chunk, number of chunks). Default chunk: 64 on CUDA, 16 in the interpreter;
    never longer than L (a short call pads less). Forward, tangent and adjoint agree on it."""
    T = int(chunk) if chunk else (64 if device.type == "cuda" else 16)
    if T < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    T = max(1, min(T, L))
    return T, max(1, -(-L // T))


def config(device: torch.device, P: int, N: int, chunk: int, blocks: dict | None = None) -> dict:
    """Block sizes (powers of two) and warps; untuned guesses. Every block is at least 16,
    tl.dot's minimum: compiled kernels need it, and so does the interpreter of Triton < 3.3
    (the floor of pgf's range), so a short test shape is padded the way a GPU pads it.
    `blocks` overrides any of "t", "p", "n" (tests force several P-blocks)."""
    least = 16
    cfg = {
        "t": max(least, _pow2(chunk)),
        "p": max(least, min(_pow2(P), 64)),
        "n": max(least, _pow2(N)),
        "warps": 4 if device.type == "cuda" else 1,
    }
    for key, value in (blocks or {}).items():
        if key not in cfg:
            raise KeyError(f"unknown block setting {key!r}; known: {', '.join(cfg)}")
        if value < 1 or value & (value - 1):
            raise ValueError(f"block setting {key} must be a power of two, got {value}")
        cfg[key] = value
    if cfg["t"] < chunk or cfg["n"] < N:
        raise ValueError(f"blocks t={cfg['t']}, n={cfg['n']} must cover chunk {chunk} and N {N}")
    return cfg


def strides(t: torch.Tensor | None, dims: int) -> tuple[int, ...]:
    """t's strides (zeros when t is None, for kernels that do not read it)."""
    return tuple(t.stride()) if t is not None else (0,) * dims


# ----------------------------------------------------------------------------------------------
# device functions


@triton.jit
def chunk_rows(c, chunk, L, BLOCK_T: tl.constexpr):
    """(i, t, mask): row index in the chunk, position in the sequence, and which rows are real."""
    i = tl.arange(0, BLOCK_T).to(tl.int64)
    t = c * chunk + i
    return i, t, (i < chunk) & (t < L)


@triton.jit
def load_rows(ptr, base, t, s_l, t_mask, ACC: tl.constexpr):
    """A [BLOCK_T] vector ptr[base + t * s_l] (0 where masked)."""
    return tl.load(ptr + base + t * s_l, mask=t_mask, other=0.0).to(ACC)


@triton.jit
def load_tile(ptr, base, t, s_l, cols, s_c, t_mask, c_mask, ACC: tl.constexpr):
    """A [BLOCK_T, cols] tile ptr[base + t * s_l + col * s_c] (0 where masked)."""
    offs = base + t[:, None] * s_l + cols[None, :] * s_c
    return tl.load(ptr + offs, mask=t_mask[:, None] & c_mask[None, :], other=0.0).to(ACC)


@triton.jit
def log_decays(dt, A_h, i, BLOCK_T: tl.constexpr):
    """(a, a_T): the cumulative log-decay sum_{r<=t} dt_r A over the chunk (<= 0, non-increasing;
    padded rows have dt = 0 and repeat the last value) and its last value."""
    a = tl.cumsum(dt * A_h, axis=0)
    return a, tl.sum(tl.where(i == BLOCK_T - 1, a, 0.0), axis=0)


@triton.jit
def causal_decay(a, i):
    """[t, s] = exp(a_t - a_s) for s <= t, else 0: only non-positive exponents are formed."""
    causal = i[:, None] >= i[None, :]
    return tl.where(causal, exp(tl.where(causal, a[:, None] - a[None, :], 0.0)), 0.0)


@triton.jit
def dot(a, b):
    """a @ b in full precision: tl.dot without TF32 for fp32; for fp64 (the exactness checks) a
    broadcast product summed over the inner axis, since tl.dot takes no fp64 before Triton 3.3
    and fp64 dot support on GPUs varies by version and architecture."""
    if a.dtype == tl.float64:
        return tl.sum(a[:, :, None] * b[None, :, :], axis=1)
    else:
        return tl.dot(a, b, input_precision="ieee")
