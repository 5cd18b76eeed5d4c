"""pgf_kernels: selective-scan kernels with carried state.

Every kernel has a pure-PyTorch reference beside it. The references run
anywhere (CPU, CUDA) and are the ground truth the Triton kernels are tested
against; they are differentiable with plain autograd.
"""

from pgf_kernels.reference import selective_scan_ref

__all__ = ["selective_scan_ref"]
