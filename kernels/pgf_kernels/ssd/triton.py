"""Triton SSD (Mamba-2) scan with state in and out: forward, tangent (JVP) and adjoint (VJP).

Layout as `ssd_scan_ref`: x (b, L, H, P); dt (b, L, H); A (H,); B, C (b, L, G, N); D (H,);
h0, h_last (b, H, P, N); tangents carry a leading K (directions sharing one primal).

The chunked algorithm: a states kernel walks the chunks in order per (batch row, head, P-block),
carrying the (P-block, N) state in registers and adding each chunk's contribution as one matrix
product; the chunk starts it stores are the adjoint's residual (1/chunk of all states). Output,
adjoint and tangent kernels then take every chunk at once, with (T x T) decay-masked C Bᵀ
matrices and tl.dot products of the chunk's tiles (full precision: no TF32). Only non-positive
numbers are exponentiated; arithmetic in fp32 (fp64 for fp64 inputs); offsets are int64; the
adjoint's per-head partials are summed by torch in a fixed order (deterministic, no atomics).

Tested in Triton's interpreter on CPU (TRITON_INTERPRET=1 set before import) only: compilation
and speed on a GPU have not been checked (no GPU where this was written). Every block is at
least 16 wide, tl.dot's minimum.

Kernels and launchers: `triton_forward`, `triton_backward`, `triton_tangent` (shared pieces in
`triton_util`). This module is the backend's entry point; the autograd glue looks its launchers
up here at every call.
"""

from pgf_kernels.ssd.triton_backward import ssd_backward
from pgf_kernels.ssd.triton_forward import ssd_forward
from pgf_kernels.ssd.triton_tangent import ssd_tangent
from pgf_kernels.ssd.triton_util import plan
from pgf_kernels.triton_common import interpreted

__all__ = ["ssd_forward", "ssd_backward", "ssd_tangent", "plan", "interpreted"]
