"""`ssd_scan` (the Mamba-2 scan) and its saving / VJP pair: one entry point, three backends.

Layout and semantics are those of `ssd_scan_ref`:
    x (b, L, H, P); dt (b, L, H) (positive: softplus'd and clamped by the caller); A (H,) negative;
    B, C (b, L, G, N) (head h reads group h // (H // G)); D (H,); h0, h_last (b, H, P, N).

Backends (`backend=`; None: "auto"):
  * "reference": the step-by-step recurrence (`ssd.reference`; slow, the ground truth);
  * "cpu": the chunked matrix form in plain PyTorch (`ssd.chunked`); differentiable by autograd,
    forward mode and vmap included; needs no numba and runs on any device (the name says where
    "auto" picks it); its saving / VJP pair keeps the chunk-start states and pulls back by hand
    (`ssd.chunked_vjp`), without autograd;
  * "triton": the Triton kernels (`ssd.triton`) as autograd functions with backward, jvp and vmap
    rules (`ssd.autograd`); every gradient, dA and dD included. CUDA tensors, or CPU tensors under
    TRITON_INTERPRET=1.
"auto": "triton" for CUDA tensors when Triton can run there, else "cpu". Unlike the selective
scan's rule it does not fall back to the reference when parameters need gradients: every
backend here gives them. A forced "triton" where it cannot run is a RuntimeError.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.profiler import record_function

from pgf_kernels.backends import check_name, requested, triton_unavailable_reason
from pgf_kernels.ssd.chunked import ChunkWork, ssd_scan_chunked, ssd_scan_chunked_saving
from pgf_kernels.ssd.chunked_vjp import ssd_scan_chunked_vjp
from pgf_kernels.ssd.reference import ssd_scan_ref
from pgf_kernels.ssd.shapes import work_dtype


def ssd_backend(x: torch.Tensor, backend: str | None = None) -> str:
    """"reference", "cpu" or "triton": what `ssd_scan` runs for x's device when asked for
    `backend` (None: "auto"); a RuntimeError when "triton" is forced where it cannot run, a
    ValueError for an unknown name."""
    name = requested(backend)
    if name == "auto":
        cuda_triton = x.device.type == "cuda" and triton_unavailable_reason(x.device) is None
        return "triton" if cuda_triton else "cpu"
    if name == "triton":
        reason = triton_unavailable_reason(x.device)
        if reason is not None:
            raise RuntimeError(f"kernel backend 'triton' cannot run here: {reason}")
    return name


def _triton_function():
    from pgf_kernels.ssd.autograd import TritonSsdFunction

    return TritonSsdFunction


def ssd_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    *,
    backend: str | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y (b, L, H, P) in x's dtype, h_last (b, H, P, N) in x's dtype promoted to at least fp32)
    of the SSD scan from state h0 (None: zeros), computed by `backend` (None: "auto").
    `chunk` (positions per chunk) changes only the order of work (the reference ignores it)."""
    name = ssd_backend(x, backend)
    if name == "reference":
        return ssd_scan_ref(x, dt, A, B, C, D, h0)
    if name == "cpu":
        return ssd_scan_chunked(x, dt, A, B, C, D, h0, chunk=chunk)
    y, h_last, _ = _triton_function().apply(x, dt, A, B, C, D, h0, chunk)
    return y, h_last


class SsdResidual(NamedTuple):
    """What `ssd_scan_vjp` needs of a "cpu" or "triton" `ssd_scan_saving` call besides its inputs."""

    backend: str  # "cpu" or "triton"
    starts: torch.Tensor  # chunk-start states (b, n_chunks, H, P, N)
    chunk: int | None
    y: torch.Tensor | None = None  # the call's output ("cpu": its VJP reads part of da from it)
    kept: ChunkWork | None = None  # "cpu" with keep_work: the chunked inputs, within-chunk decays and C·Bᵀ


def ssd_scan_saving(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    *,
    backend: str | None = None,
    chunk: int | None = None,
    keep_work: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, SsdResidual | None]:
    """`ssd_scan` without autograd, and its residual: what `ssd_scan_vjp` needs to pull cotangents
    back through this call without running it again (the chunk starts, 1/chunk of the states, from
    the "cpu" and "triton" backends); None for "reference" (the VJP recomputes). `keep_work`
    ("cpu"): the residual also holds the chunked inputs, the within-chunk decays and C·Bᵀ, about
    three times x's size, so that a VJP that follows at once does not form them again."""
    name = ssd_backend(x, backend)
    with torch.no_grad(), record_function("pgf_kernels::ssd_forward"):
        if name == "reference":
            y, h_last = ssd_scan_ref(x, dt, A, B, C, D, h0)
            return y, h_last, None
        if name == "cpu":
            y, h_last, starts, kept = ssd_scan_chunked_saving(x, dt, A, B, C, D, h0, chunk, keep_work)
            return y, h_last, SsdResidual(name, starts, chunk, y, kept)
        from pgf_kernels.ssd import triton

        y, h_last, starts = triton.ssd_forward(x, dt, A, B, C, D, h0, chunk=chunk)
    return y, h_last, SsdResidual(name, starts, chunk)


def _recomputed_vjp(x, dt, A, B, C, D, h0, dy, dh_last, backend, chunk):
    """The VJP by autograd through a fresh forward (no residual)."""
    work = work_dtype(x)
    b, _, H, P = x.shape
    start = torch.zeros(b, H, P, B.shape[-1], dtype=work, device=x.device) if h0 is None else h0
    leaves = [t.detach().requires_grad_(True) for t in (x, dt, B, C, start)]
    with torch.enable_grad():
        y, h_last = ssd_scan(leaves[0], leaves[1], A.detach(), leaves[2], leaves[3],
                             None if D is None else D.detach(), leaves[4], backend=backend, chunk=chunk)
        pairs = [(o, g) for o, g in ((y, dy), (h_last, dh_last)) if g is not None]
        if not pairs:
            return tuple(torch.zeros_like(t) for t in leaves)
        grads = torch.autograd.grad([o for o, _ in pairs], leaves, [g.to(o.dtype) for o, g in pairs],
                                    allow_unused=True, materialize_grads=True)
    return grads


def ssd_scan_vjp(
    residual: SsdResidual | None,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    dy: torch.Tensor | None,
    dh_last: torch.Tensor | None,
    *,
    h0: torch.Tensor | None = None,
    backend: str | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, ddt, dB, dC, dh0) of the `ssd_scan_saving` call that gave `residual` (same inputs), for
    the cotangents dy of y and dh_last of h_last (None: zero); dh0 in the state's dtype, the others
    in their inputs'. A residual runs its backend's VJP from the kept chunk starts (`backend` must
    be None, "auto" or the residual's; `h0` and `chunk` are not needed). With None, `backend`
    decides: "cpu" pulls back by hand from chunk starts recomputed from `h0` (`chunk` as in the
    forward call), "reference" recomputes the forward under autograd."""
    if residual is None:
        name = ssd_backend(x, backend)
        with record_function("pgf_kernels::ssd_vjp"):
            if name == "cpu":
                return ssd_scan_chunked_vjp(x, dt, A, B, C, D, h0, dy, dh_last, chunk=chunk)
            dx, ddt, dB, dC, dh0 = _recomputed_vjp(x, dt, A, B, C, D, h0, dy, dh_last, name, chunk)
        return dx.to(x.dtype), ddt.to(dt.dtype), dB.to(B.dtype), dC.to(C.dtype), dh0.to(work_dtype(x))
    if backend is not None and check_name(backend) not in ("auto", residual.backend):
        raise ValueError(f"this residual was made by the {residual.backend!r} kernels, not {backend!r}")
    if residual.backend == "cpu":
        with record_function("pgf_kernels::ssd_vjp"):
            return ssd_scan_chunked_vjp(x, dt, A, B, C, D, None, dy, dh_last, chunk=residual.chunk,
                                        starts=residual.starts, y=residual.y, kept=residual.kept)
    from pgf_kernels.ssd import triton

    with torch.no_grad(), record_function("pgf_kernels::ssd_vjp"):
        dx, ddt, dB, dC, dh0, _, _ = triton.ssd_backward(
            x, dt, A, B, C, D, residual.starts.to(x.device), dy, dh_last, chunk=residual.chunk
        )
    return dx, ddt, dB, dC, dh0
