"""Triton selective scan with state in and out: forward, tangent (JVP) and adjoint (VJP).

Layout (batch first, as `selective_scan_ref`):
    x, delta, z : (b, L, E)     B, C : (b, L, N)     A : (E, N)     D : (E,)
    h0, h_last  : (b, E, N)     tangents carry a leading K (directions sharing one primal)

Recurrence:  a_t = exp(delta_t A);  h_t = a_t h_{t-1} + delta_t x_t B_t;
             y_t = (C_t . h_t + D x_t) * silu(z_t)

Every kernel is parallel over sequence chunks as well as channel blocks, in three passes:
  1. each chunk from a zero state: its local end state and sum(delta) (its total decay is
     P = exp(A sum(delta)) <= 1),
  2. a short pass over chunks (an associative scan over blocks of chunks, sequential across
     blocks) giving every chunk's start state (mirrored for the adjoint: every chunk's end
     cotangent, right to left),
  3. each chunk again from its start state, writing the outputs.
A program holds its chunk as a [BLOCK_T, BLOCK_E, BLOCK_N] block (tangents
[BLOCK_T, BLOCK_K, BLOCK_E, BLOCK_N]): the states by an associative scan over T of
(decay, drive) pairs from the chunk-start state, the adjoint's state cotangents by a reversed
scan from the chunk-end cotangent, so (L, E, N) is never materialised; only the chunk starts
(b, L/chunk, E, N) are, and the forward returns them for the adjoint. Pass 1 needs no scan:
the end state is sum_s exp(A S_s) drive_s with S_s the sum of delta after s. Only
non-positive numbers are exponentiated (no division by decays); states and sums are fp32
(fp64 for fp64 inputs); offsets are int64; dB and dC are summed over channels on chip and
the per-group partials by torch in a fixed order (no atomics: deterministic).

Runs on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 was set before this module
was imported (slow; for tests).

The kernels and their launchers are in `triton_forward`, `triton_tangent` and `triton_backward`
(block sizes in `triton_util`; exp, buffers and the interpreter flag in `pgf_kernels.triton_common`,
whose NAN_FILL the tests set). This module is the backend's entry point: the autograd glue looks
its launchers up here at every call.
"""

from pgf_kernels.scan.triton_backward import scan_backward
from pgf_kernels.scan.triton_forward import scan_forward
from pgf_kernels.scan.triton_tangent import scan_tangent
from pgf_kernels.scan.triton_util import default_chunk
from pgf_kernels.triton_common import interpreted

__all__ = ["scan_forward", "scan_tangent", "scan_backward", "interpreted", "default_chunk"]
