"""The causal depthwise conv1d + SiLU with carried inputs: `reference` (PyTorch), `cpu` (numba),
`triton` (+ `triton_kernels`: the Triton kernels, CUDA or Triton's interpreter), and the op
`causal_conv1d` choosing between them (`ops`)."""

from pgf_kernels.conv.ops import causal_conv1d, conv_backend
from pgf_kernels.conv.reference import causal_conv1d_ref

__all__ = ["causal_conv1d", "causal_conv1d_ref", "conv_backend"]
