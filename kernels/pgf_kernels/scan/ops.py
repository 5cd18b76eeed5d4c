"""`selective_scan` and its saving / VJP pair: one entry point, the reference, the CPU or the Triton kernels behind it.

Layout and semantics are those of `selective_scan_ref`:
    x, delta, z (b, L, E); B, C (b, L, N); A (E, N); D (E,); h0, h_last (b, E, N).

Backends (`backend=`; None: "auto"): "reference" (pure PyTorch, any device,
differentiable in everything), "triton" (`scan.triton`: input gradients and tangents only, never
dA or dD), "cpu" (`scan.cpu`, numba: CPU tensors; gradients for every input, dA and dD included;
tangents), and "auto", resolved by `pgf_kernels.backends.resolve_backend` with parameter_grads
when A or D needs a gradient (training keeps the reference). The compiled kernels run as
autograd functions with backward, jvp and vmap rules (`scan.autograd`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.profiler import record_function

from pgf_kernels.backends import check_name, requested, resolve_backend
from pgf_kernels.scan.autograd import (
    CpuScanFunction,
    TritonScanFunction,
    cpu_backward,
    cpu_forward,
    triton_backward,
    triton_forward,
)
from pgf_kernels.scan.reference import selective_scan_ref

_FUNCTIONS = {"cpu": CpuScanFunction, "triton": TritonScanFunction}
_FORWARDS = {"cpu": cpu_forward, "triton": triton_forward}
_BACKWARDS = {"cpu": cpu_backward, "triton": triton_backward}


def scan_backend(x: torch.Tensor, A: torch.Tensor, D: torch.Tensor | None, backend: str | None = None) -> str:
    """"reference", "triton" or "cpu": the kernels `selective_scan` runs for these tensors when
    asked for `backend` (None: "auto"); a RuntimeError when "triton" or "cpu" is forced where it
    cannot run, a ValueError for an unknown name."""
    parameter_grads = torch.is_grad_enabled() and (A.requires_grad or (D is not None and D.requires_grad))
    return resolve_backend(requested(backend), x.device, parameter_grads)


def selective_scan(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    *,
    backend: str | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y (b, L, E), h_last (b, E, N)) of the selective scan from state h0, as
    `selective_scan_ref`, computed by `backend` (None: "auto").
    `chunk` (positions per chunk) changes only the order of work."""
    name = scan_backend(x, A, D, backend)
    if name == "reference":
        return selective_scan_ref(x, delta, A, B, C, D, z, h0, chunk=chunk)
    y, h_last, _ = _FUNCTIONS[name].apply(x, delta, A, B, C, D, z, h0, chunk)
    return y, h_last


class ScanResidual(NamedTuple):
    """What `selective_scan_vjp` needs of a compiled scan call besides its inputs."""

    backend: str  # "cpu" or "triton"
    starts: torch.Tensor  # chunk-start states (b, n_chunks, E, N)
    chunk: int | None


def selective_scan_saving(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    *,
    backend: str | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, ScanResidual | None]:
    """`selective_scan` without autograd, and its residual: what `selective_scan_vjp` needs to pull
    cotangents back through this call later without running it again (the compiled kernels'
    chunk-start states, a few % of the inputs' size); None for the reference (recompute instead)."""
    name = scan_backend(x, A, D, backend)
    with torch.no_grad(), record_function("pgf_kernels::scan_forward"):
        if name == "reference":
            y, h_last = selective_scan_ref(x, delta, A, B, C, D, z, h0, chunk=chunk)
            return y, h_last, None
        y, h_last, starts = _FORWARDS[name](x, delta, A, B, C, D, z, h0, chunk)
    return y, h_last, ScanResidual(name, starts, chunk)


def selective_scan_vjp(
    residual: ScanResidual,
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    dy: torch.Tensor,
    dh_last: torch.Tensor | None,
    *,
    backend: str | None = None,
) -> tuple[torch.Tensor, ...]:
    """(dx, ddelta, dB, dC, dz | None, dh0) of the `selective_scan_saving` call that gave `residual`
    (same inputs), for the cotangents dy of y and dh_last of h_last (None: zero); dh0 in the state's
    dtype, the others in their inputs'. The residual's backend runs it: `backend` None or "auto",
    or that backend's name; another is a ValueError."""
    if backend is not None and check_name(backend) not in ("auto", residual.backend):
        raise ValueError(f"this residual was made by the {residual.backend!r} kernels, not {backend!r}")
    with torch.no_grad(), record_function("pgf_kernels::scan_vjp"):
        grads = _BACKWARDS[residual.backend](
            x, delta, A, B, C, D, z, residual.starts.to(x.device), dy, dh_last, residual.chunk
        )[:6]
    inputs = (x, delta, B, C, z)
    return (*(None if g is None else g.to(t.dtype) for g, t in zip(grads[:5], inputs)), grads[5])
