"""`selective_scan`: one entry point, the PyTorch reference, the Triton or the CPU kernels behind it.

Layout and semantics are those of `selective_scan_ref`:
    x, delta, z (b, L, E); B, C (b, L, N); A (E, N); D (E,); h0, h_last (b, E, N).

Backends: "reference" (pure PyTorch, any device, differentiable in everything), "triton"
(the kernels in `triton_scan`: input gradients and tangents only, never dA or dD), "cpu"
(the compiled numba kernels in `cpu_scan`: CPU tensors; gradients for every input, dA and dD
included; tangents), and "auto" (the default): Triton for CUDA tensors when Triton is
importable and neither A nor D needs a gradient; for CPU tensors the compiled CPU kernels
when numba is importable and neither A nor D needs a gradient (training keeps the
reference, so its runs stay reproducible); the reference otherwise. The
Triton path is registered as a `torch.autograd.Function` with `backward` (the adjoint kernel), `jvp` (the fused tangent
kernel) and `vmap` rules, so plain autograd, `torch.func.jvp` and
`vmap(lambda t: jvp(f, primals, (t,)))` (one primal, many tangents: the tangent engine) all
run the kernels. Under vmap the tangent kernel receives the vmapped dimension folded into
its K (directions) dimension. The CPU kernels are registered the same way (`_CpuScanFunction`,
`_CpuTangentFunction`, `_CpuAdjointFunction`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from pgf_kernels.reference import selective_scan_ref

BACKENDS = ("reference", "triton", "auto", "cpu")  # "cpu" last: messages keep their old prefix
_backend = "auto"


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def set_kernel_backend(name: str) -> None:
    """Set the process-wide default backend ("reference", "triton", "auto" or "cpu")."""
    global _backend
    _backend = _check_name(name)


def get_kernel_backend() -> str:
    """The process-wide default backend."""
    return _backend


@contextmanager
def kernel_backend(name: str):
    """Use backend `name` inside the block, then restore the previous default."""
    global _backend
    previous, _backend = _backend, _check_name(name)
    try:
        yield
    finally:
        _backend = previous


def _triton_module():
    """The kernel module, or None when Triton cannot be imported."""
    try:
        from pgf_kernels import triton_scan
    except ImportError:
        return None
    return triton_scan


def _cpu_module():
    """The compiled CPU kernel module, or None when numba cannot be imported."""
    try:
        from pgf_kernels import cpu_scan
    except ImportError:
        return None
    return cpu_scan if cpu_scan.available() else None


def cpu_unavailable_reason(device: torch.device) -> str | None:
    """Why the compiled CPU kernels cannot run on tensors on `device` (None when they can)."""
    if _cpu_module() is None:
        return "numba is not installed (pip install numba), use the reference kernels (--kernels reference)"
    if device.type != "cpu":
        return f"the CPU kernels need CPU tensors, got {device.type} tensors; use --kernels auto or triton"
    return None


def triton_unavailable_reason(device: torch.device) -> str | None:
    """Why the Triton kernels cannot run on tensors on `device` (None when they can).

    Checked before any launch: launching on a machine without a GPU fails deep inside Triton
    ("0 active drivers")."""
    module = _triton_module()
    if module is None:
        return "Triton is not installed (pip install triton), use the reference kernels (--kernels reference)"
    if device.type == "cuda":
        return None
    if device.type == "cpu" and module.interpreted():
        return None
    if device.type == "cpu":
        hint = (
            "TRITON_INTERPRET=1 is set but was not when pgf_kernels was imported"
            if os.environ.get("TRITON_INTERPRET") == "1"
            else "set TRITON_INTERPRET=1 before importing pgf to run them (slowly) on CPU"
        )
        return f"the Triton kernels need CUDA tensors, got CPU tensors ({hint}); use the reference kernels (--kernels reference)"
    return f"the Triton kernels do not support {device.type} tensors; use the reference kernels (--kernels reference)"


def _wants_parameter_grad(A: torch.Tensor, D: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and (A.requires_grad or (D is not None and D.requires_grad))


def resolve_backend(x: torch.Tensor, A: torch.Tensor, D: torch.Tensor | None, backend: str | None = None) -> str:
    """"reference", "triton" or "cpu" for these tensors; raises RuntimeError when "triton" or
    "cpu" is forced where it cannot run."""
    name = _check_name(backend or _backend)
    if name == "reference":
        return name
    if name == "auto":
        if x.is_cuda and _triton_module() is not None and not _wants_parameter_grad(A, D):
            return "triton"
        if x.device.type == "cpu" and _cpu_module() is not None and not _wants_parameter_grad(A, D):
            return "cpu"
        return "reference"
    if name == "cpu":
        reason = cpu_unavailable_reason(x.device)
        if reason is not None:
            raise RuntimeError(f"kernel backend 'cpu' cannot run here: {reason}")
        return "cpu"
    reason = triton_unavailable_reason(x.device)
    if reason is not None:
        raise RuntimeError(f"kernel backend 'triton' cannot run here: {reason}")
    return "triton"


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
    `selective_scan_ref`, computed by `backend` (default: the current default backend).
    `chunk` (positions per chunk) changes only the order of work."""
    name = resolve_backend(x, A, D, backend)
    if name == "reference":
        return selective_scan_ref(x, delta, A, B, C, D, z, h0, chunk=chunk)
    function = _CpuScanFunction if name == "cpu" else _ScanFunction
    y, h_last, _ = function.apply(x, delta, A, B, C, D, z, h0, chunk)
    return y, h_last


# ----------------------------------------------------------------------------------------------
# autograd / functorch registration


def _loop_vmap(function, batch_size: int, in_dims, args):
    """General vmap rule: apply `function` to each slice of the vmapped dimension, stack."""
    results = []
    for index in range(batch_size):
        sliced = [a.select(d, index) if (d is not None and a is not None) else a for a, d in zip(args, in_dims)]
        results.append(function(*sliced))
    outputs = tuple(torch.stack([r[j] for r in results]) for j in range(len(results[0])))
    return outputs, tuple(0 for _ in outputs)


def _moved(t: torch.Tensor | None, dim: int | None, batch_size: int) -> torch.Tensor | None:
    """t with its vmapped dimension first (expanded, without a copy, when it has none)."""
    if t is None:
        return None
    if dim is None:
        return t.unsqueeze(0).expand(batch_size, *t.shape)
    return t.movedim(dim, 0)


class _ScanFunction(torch.autograd.Function):
    """Triton scan: (x, delta, A, B, C, D, z, h0, chunk) -> (y, h_last, chunk starts).

    The chunk starts (b, nc, E, N) are an output (non-differentiable) so that the backward
    can recompute states from them (functorch requires saved intermediates to be outputs)."""

    @staticmethod
    def forward(x, delta, A, B, C, D, z, h0, chunk):
        from pgf_kernels import triton_scan

        return triton_scan.scan_forward(x, delta, A, B, C, D, z, h0, chunk=chunk)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, delta, A, B, C, D, z, h0, chunk = inputs
        ctx.mark_non_differentiable(output[2])
        ctx.chunk = chunk
        ctx.h0_dtype = h0.dtype if h0 is not None else None
        ctx.save_for_backward(x, delta, A, B, C, D, z, output[2])
        ctx.save_for_forward(x, delta, A, B, C, D, z, h0)

    @staticmethod
    def backward(ctx, dy, dh_last, _dstarts):
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[5]:
            raise RuntimeError(
                "the Triton selective scan gives input gradients only; a gradient for A or D was "
                "requested (freeze the parameters, or use the reference kernels: --kernels reference)"
            )
        x, delta, A, B, C, D, z, starts = ctx.saved_tensors
        dx, ddelta, dB, dC, dz, dh0 = _AdjointFunction.apply(x, delta, A, B, C, D, z, starts, dy, dh_last, ctx.chunk)
        dh0 = dh0.to(ctx.h0_dtype) if ctx.needs_input_grad[7] else None
        return dx, ddelta, None, dB, dC, None, dz if z is not None else None, dh0, None

    @staticmethod
    def jvp(ctx, x_t, delta_t, A_t, B_t, C_t, D_t, z_t, h0_t, _chunk_t):
        x, delta, A, B, C, D, z, h0 = ctx.saved_tensors
        tangents = [x_t, delta_t, A_t, B_t, C_t, D_t, z_t, h0_t]
        # one direction (K = 1); under vmap the _TangentFunction rule folds the vmapped dim into K
        tangents = [t.unsqueeze(0) if t is not None else None for t in tangents]
        y_t, h_t = _TangentFunction.apply(x, delta, A, B, C, D, z, h0, *tangents, ctx.chunk)
        return y_t.squeeze(0), h_t.squeeze(0), None

    @staticmethod
    def vmap(info, in_dims, x, delta, A, B, C, D, z, h0, chunk):
        V = info.batch_size
        dims = in_dims[:8]
        if dims[2] is None and dims[5] is None:  # fold the vmapped dim into the batch dim

            def fold(t, d):
                moved = _moved(t, d, V)
                return None if moved is None else moved.reshape(V * moved.shape[1], *moved.shape[2:])

            y, h_last, starts = _ScanFunction.apply(
                fold(x, dims[0]), fold(delta, dims[1]), A, fold(B, dims[3]), fold(C, dims[4]), D,
                fold(z, dims[6]), fold(h0, dims[7]), chunk,
            )
            unfold = lambda t: t.reshape(V, t.shape[0] // V, *t.shape[1:])  # noqa: E731
            return (unfold(y), unfold(h_last), unfold(starts)), (0, 0, 0)
        return _loop_vmap(_ScanFunction.apply, V, in_dims, (x, delta, A, B, C, D, z, h0, chunk))


def _no_higher_order(*_):
    raise RuntimeError("derivatives of the Triton scan's derivatives are not supported; use the reference kernels (--kernels reference)")


class _TangentFunction(torch.autograd.Function):
    """(primals..., tangents with a leading K..., chunk) -> (y' (K, b, L, E), h_last' (K, b, E, N))."""

    @staticmethod
    def forward(x, delta, A, B, C, D, z, h0, x_t, delta_t, A_t, B_t, C_t, D_t, z_t, h0_t, chunk):
        from pgf_kernels import triton_scan

        tangents = (x_t, delta_t, A_t, B_t, C_t, D_t, z_t, h0_t)
        _, _, y_t, h_t = triton_scan.scan_tangent(
            x, delta, A, B, C, D, z, h0, tangents, K=_directions(tangents), chunk=chunk, write_primal=False
        )
        return y_t, h_t

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    backward = staticmethod(_no_higher_order)
    jvp = staticmethod(_no_higher_order)

    @staticmethod
    def vmap(info, in_dims, *args):
        V = info.batch_size
        primals, tangents, chunk = args[:8], args[8:16], args[16]
        if all(d is None for d in in_dims[:8]):
            # the fast path (the tangent engine): one primal, the vmapped dim becomes directions
            moved = [_moved(t, d, V) for t, d in zip(tangents, in_dims[8:16])]  # (V, K, ...)
            K = next(m.shape[1] for m in moved if m is not None)
            folded = [None if m is None else m.reshape(V * K, *m.shape[2:]) for m in moved]
            y_t, h_t = _TangentFunction.apply(*primals, *folded, chunk)
            return (y_t.reshape(V, K, *y_t.shape[1:]), h_t.reshape(V, K, *h_t.shape[1:])), (0, 0)
        return _loop_vmap(_TangentFunction.apply, V, in_dims, args)


def _directions(tangents) -> int:
    for t in tangents:
        if t is not None:
            return t.shape[0]
    return 1


class _AdjointFunction(torch.autograd.Function):
    """(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk) -> (dx, ddelta, dB, dC, dz, dh0);
    dz is an empty tensor when z is None."""

    @staticmethod
    def forward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk):
        from pgf_kernels import triton_scan

        dx, ddelta, dB, dC, dz, dh0 = triton_scan.scan_backward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk=chunk)
        return dx, ddelta, dB, dC, dz if dz is not None else x.new_empty(0), dh0

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    backward = staticmethod(_no_higher_order)
    jvp = staticmethod(_no_higher_order)

    @staticmethod
    def vmap(info, in_dims, *args):
        return _loop_vmap(_AdjointFunction.apply, info.batch_size, in_dims, args)


# ----------------------------------------------------------------------------------------------
# the compiled CPU kernels (numba), registered like the Triton ones; they also give dA and dD


def _cpu_no_higher_order(*_):
    raise RuntimeError("derivatives of the CPU scan's derivatives are not supported; use the reference kernels (--kernels reference)")


class _CpuScanFunction(torch.autograd.Function):
    """CPU scan: (x, delta, A, B, C, D, z, h0, chunk) -> (y, h_last, chunk starts (b, nc, E, N))."""

    @staticmethod
    def forward(x, delta, A, B, C, D, z, h0, chunk):
        from pgf_kernels import cpu_scan

        return cpu_scan.scan_forward(x, delta, A, B, C, D, z, h0, chunk=chunk)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, delta, A, B, C, D, z, h0, chunk = inputs
        ctx.mark_non_differentiable(output[2])
        ctx.chunk = chunk
        ctx.h0_dtype = h0.dtype if h0 is not None else None
        ctx.save_for_backward(x, delta, A, B, C, D, z, output[2])
        ctx.save_for_forward(x, delta, A, B, C, D, z, h0)

    @staticmethod
    def backward(ctx, dy, dh_last, _dstarts):
        x, delta, A, B, C, D, z, starts = ctx.saved_tensors
        dx, ddelta, dB, dC, dz, dh0, dA, dD = _CpuAdjointFunction.apply(
            x, delta, A, B, C, D, z, starts, dy, dh_last, ctx.chunk
        )
        need = ctx.needs_input_grad
        return (
            dx.to(x.dtype) if need[0] else None,
            ddelta.to(delta.dtype) if need[1] else None,
            dA.to(A.dtype) if need[2] else None,
            dB.to(B.dtype) if need[3] else None,
            dC.to(C.dtype) if need[4] else None,
            dD.to(D.dtype) if need[5] and D is not None else None,
            dz.to(z.dtype) if need[6] and z is not None else None,
            dh0.to(ctx.h0_dtype) if need[7] else None,
            None,
        )

    @staticmethod
    def jvp(ctx, x_t, delta_t, A_t, B_t, C_t, D_t, z_t, h0_t, _chunk_t):
        x, delta, A, B, C, D, z, h0 = ctx.saved_tensors
        tangents = [x_t, delta_t, A_t, B_t, C_t, D_t, z_t, h0_t]
        # one direction (K = 1); under vmap _CpuTangentFunction folds the vmapped dim into K
        tangents = [t.unsqueeze(0) if t is not None else None for t in tangents]
        y_t, h_t = _CpuTangentFunction.apply(x, delta, A, B, C, D, z, h0, *tangents)
        return y_t.squeeze(0), h_t.squeeze(0), None

    @staticmethod
    def vmap(info, in_dims, x, delta, A, B, C, D, z, h0, chunk):
        V = info.batch_size
        dims = in_dims[:8]
        if dims[2] is None and dims[5] is None:  # fold the vmapped dim into the batch dim

            def fold(t, d):
                moved = _moved(t, d, V)
                return None if moved is None else moved.reshape(V * moved.shape[1], *moved.shape[2:])

            y, h_last, starts = _CpuScanFunction.apply(
                fold(x, dims[0]), fold(delta, dims[1]), A, fold(B, dims[3]), fold(C, dims[4]), D,
                fold(z, dims[6]), fold(h0, dims[7]), chunk,
            )
            unfold = lambda t: t.reshape(V, t.shape[0] // V, *t.shape[1:])  # noqa: E731
            return (unfold(y), unfold(h_last), unfold(starts)), (0, 0, 0)
        return _loop_vmap(_CpuScanFunction.apply, V, in_dims, (x, delta, A, B, C, D, z, h0, chunk))


class _CpuTangentFunction(torch.autograd.Function):
    """(primals..., tangents with a leading K...) -> (y' (K, b, L, E), h_last' (K, b, E, N))."""

    @staticmethod
    def forward(x, delta, A, B, C, D, z, h0, x_t, delta_t, A_t, B_t, C_t, D_t, z_t, h0_t):
        from pgf_kernels import cpu_scan

        tangents = (x_t, delta_t, A_t, B_t, C_t, D_t, z_t, h0_t)
        return cpu_scan.scan_tangent(x, delta, A, B, C, D, z, h0, tangents, K=_directions(tangents))

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    backward = staticmethod(_cpu_no_higher_order)
    jvp = staticmethod(_cpu_no_higher_order)

    @staticmethod
    def vmap(info, in_dims, *args):
        V = info.batch_size
        primals, tangents = args[:8], args[8:16]
        if all(d is None for d in in_dims[:8]):
            # the fast path (the tangent engine): one primal, the vmapped dim becomes directions
            moved = [_moved(t, d, V) for t, d in zip(tangents, in_dims[8:16])]  # (V, K, ...)
            K = next((m.shape[1] for m in moved if m is not None), 1)
            folded = [None if m is None else m.reshape(V * K, *m.shape[2:]) for m in moved]
            if all(m is None for m in folded):
                folded[0] = primals[0].new_zeros(V * K, *primals[0].shape)
            y_t, h_t = _CpuTangentFunction.apply(*primals, *folded)
            return (y_t.reshape(V, K, *y_t.shape[1:]), h_t.reshape(V, K, *h_t.shape[1:])), (0, 0)
        return _loop_vmap(_CpuTangentFunction.apply, V, in_dims, args)


class _CpuAdjointFunction(torch.autograd.Function):
    """(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk) -> (dx, ddelta, dB, dC, dz, dh0, dA, dD),
    in the work dtype; dz (dD) is an empty tensor when z (D) is None."""

    @staticmethod
    def forward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk):
        from pgf_kernels import cpu_scan

        dx, ddelta, dB, dC, dz, dh0, dA, dD = cpu_scan.scan_backward(
            x, delta, A, B, C, D, z, starts, dy, dh_last, chunk=chunk
        )
        empty = dx.new_empty(0)
        return dx, ddelta, dB, dC, empty if dz is None else dz, dh0, dA, empty if dD is None else dD

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    backward = staticmethod(_cpu_no_higher_order)
    jvp = staticmethod(_cpu_no_higher_order)

    @staticmethod
    def vmap(info, in_dims, *args):
        return _loop_vmap(_CpuAdjointFunction.apply, info.batch_size, in_dims, args)
