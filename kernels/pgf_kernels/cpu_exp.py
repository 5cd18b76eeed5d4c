"""exp for the compiled CPU kernels that LLVM can vectorise: `fast_exp(v)` inside numba code.

numba calls libm's scalar `exp`, which keeps the scan's innermost loop (over the N states, one
decay exp(delta A) each) from being vectorised, and that exp is most of the scan's cost. Here:

    k = round(v / ln 2),   r = v - k ln2_hi - k ln2_lo   (Cody-Waite: k ln2_hi is exact),
    exp(v) = 2^k * p(r),   |r| <= ln 2 / 2,   p = Taylor polynomial (degree 7 fp32, 13 fp64),

with 2^k built from its exponent bits (an LLVM bitcast), so every step is plain vector
arithmetic. Accuracy: within 2 ulp of the correctly rounded result over the whole normal range
(tests/test_kernels_scan.py measures it). Outside it: exp(v) = 0 below the smallest normal
result (no subnormals), inf above the largest, NaN for NaN. Its own fastmath flags leave out
`reassoc`, which would fold the two-part k ln 2 back into one and lose the reduction's accuracy.

numba's disk cache of the kernels that call this (scan/cpu_kernels.py, conv/cpu.py) is keyed on
their own files only: after editing this file, delete kernels/pgf_kernels/*/__pycache__/*.nbi and
*.nbc (or touch those files) so they recompile. Installs and fresh checkouts start without a cache.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

_FLAGS = {"nsz", "contract", "arcp"}  # no reassoc (see above), no nnan/ninf (NaN and inf pass)


def fast_exp(v: float) -> float:
    """exp(v); in numba-compiled code, the vectorisable version below (this body is for Python)."""
    return math.exp(v)


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float whose IEEE bits are the integer `bits` (int32 -> float32, int64 -> float64)."""
    float_type = types.float32 if bits.bitwidth == 32 else types.float64
    llvm_type = ir.FloatType() if bits.bitwidth == 32 else ir.DoubleType()

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_type)

    return float_type(bits), codegen


_LOG2E = 1.4426950408889634
# ln 2 split so that k * hi is exact for every k in range (hi has trailing zero bits)
_LN2_HI32, _LN2_LO32 = 0.693145751953125, 1.428606765330187045e-06
_LN2_HI64, _LN2_LO64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10


def _exp32(v):
    lo, hi = np.float32(-87.33654), np.float32(88.72283)  # exp(lo) = smallest normal fp32
    w = min(max(v, lo), hi)
    k = np.floor(w * np.float32(_LOG2E) + np.float32(0.5))  # a float (math.floor gives int64)
    r = (w - k * np.float32(_LN2_HI32)) - k * np.float32(_LN2_LO32)
    p = np.float32(1.0 / 5040.0)
    p = p * r + np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    # 2^k in two factors: k + 127 may reach 255 (the inf exponent) at the top of the range
    # (numba computes integers in 64 bits; the bits go back to 32 before the bitcast)
    ki = np.int32(k)  # float -> int32 converts in vector registers; -> int64 would not (AVX2)
    half = ki >> 1
    scale1 = _float_from_bits(np.int32((half + 127) << 23))
    scale2 = _float_from_bits(np.int32((ki - half + 127) << 23))
    result = p * scale1 * scale2
    if v < lo:
        result = np.float32(0.0)
    if v > hi:
        result = np.float32(np.inf)
    if v != v:
        result = v
    return result


def _exp64(v):
    lo, hi = -708.3964185322641, 709.782712893384  # exp(lo) = smallest normal fp64
    w = min(max(v, lo), hi)
    k = np.floor(w * _LOG2E + 0.5)
    r = (w - k * _LN2_HI64) - k * _LN2_LO64
    p = 1.0 / 6227020800.0
    for inverse_factorial in (
        1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
        1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0,
    ):
        p = p * r + inverse_factorial
    ki = np.int32(k)
    half = ki >> 1
    scale1 = _float_from_bits(np.int64((half + 1023) << 52))
    scale2 = _float_from_bits(np.int64((ki - half + 1023) << 52))
    result = p * scale1 * scale2
    if v < lo:
        result = 0.0
    if v > hi:
        result = np.inf
    if v != v:
        result = v
    return result


@overload(fast_exp, jit_options={"fastmath": _FLAGS})
def _fast_exp_overload(v):
    if isinstance(v, types.Float):
        return _exp32 if v.bitwidth == 32 else _exp64
    return None
