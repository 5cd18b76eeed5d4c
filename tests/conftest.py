"""Shared pytest setup.

Without CUDA, the Triton kernels can only run in Triton's interpreter, which is chosen when a
kernel is defined (at import), so TRITON_INTERPRET=1 is set here, before any test module
imports triton or pgf_kernels. With CUDA it is left alone, so the same tests run the compiled
kernels on the GPU.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
