"""The compiled scan kernels as autograd functions: one registration serves every backend.

A backend (Triton on CUDA, numba on CPU) supplies three kernels with the layout of
`selective_scan_ref` (see `KernelSet`); `scan_functions` wraps them as
`torch.autograd.Function`s with `backward` (the adjoint kernel), `jvp` (the tangent kernel)
and `vmap` rules, so plain autograd, `torch.func.jvp` and
`vmap(lambda t: jvp(f, primals, (t,)))` (one primal, many tangents: the tangent engine) all
run the kernels. Under vmap the tangent kernel receives the vmapped dimension folded into its
K (directions) dimension, and the primal kernel the vmapped dimension folded into the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class KernelSet:
    """A backend's kernels.

    forward(x, delta, A, B, C, D, z, h0, chunk) -> (y, h_last, chunk starts (b, nc, E, N))
    tangent(primals (8), tangents (8, each with a leading K or None), K, chunk) -> (y', h_last')
    backward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk)
        -> (dx, ddelta, dB, dC, dz | None, dh0, dA | None, dD | None)
    """

    name: str  # as users read it in messages ("Triton", "CPU")
    forward: Callable
    tangent: Callable
    backward: Callable
    parameter_grads: bool  # whether backward gives dA and dD


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


def _directions(tangents) -> int:
    return next((t.shape[0] for t in tangents if t is not None), 1)


def _cast(t: torch.Tensor, dtype: torch.dtype | None, wanted: bool) -> torch.Tensor | None:
    """A wanted gradient in its input's dtype; None when not wanted or absent (an empty placeholder)."""
    return t.to(dtype) if wanted and dtype is not None and t.numel() else None


def scan_functions(kernels: KernelSet) -> tuple[type, type, type]:
    """(scan, tangent, adjoint) autograd functions running `kernels`."""

    def no_higher_order(*_):
        raise RuntimeError(
            f"derivatives of the {kernels.name} scan's derivatives are not supported; "
            "use the reference kernels (--kernels reference)"
        )

    class AdjointFunction(torch.autograd.Function):
        """(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk) -> (dx, ddelta, dB, dC, dz, dh0, dA, dD);
        an absent gradient is an empty tensor."""

        @staticmethod
        def forward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk):
            grads = kernels.backward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk)
            return tuple(x.new_empty(0) if g is None else g for g in grads)

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        backward = staticmethod(no_higher_order)
        jvp = staticmethod(no_higher_order)

        @staticmethod
        def vmap(info, in_dims, *args):
            return _loop_vmap(AdjointFunction.apply, info.batch_size, in_dims, args)

    class TangentFunction(torch.autograd.Function):
        """(primals (8), tangents with a leading K (8), chunk) -> (y' (K, b, L, E), h_last' (K, b, E, N))."""

        @staticmethod
        def forward(x, delta, A, B, C, D, z, h0, x_t, delta_t, A_t, B_t, C_t, D_t, z_t, h0_t, chunk):
            tangents = (x_t, delta_t, A_t, B_t, C_t, D_t, z_t, h0_t)
            return kernels.tangent((x, delta, A, B, C, D, z, h0), tangents, _directions(tangents), chunk)

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        backward = staticmethod(no_higher_order)
        jvp = staticmethod(no_higher_order)

        @staticmethod
        def vmap(info, in_dims, *args):
            V = info.batch_size
            primals, tangents, chunk = args[:8], args[8:16], args[16]
            if all(d is None for d in in_dims[:8]):
                # the fast path (the tangent engine): one primal, the vmapped dim becomes directions
                moved = [_moved(t, d, V) for t, d in zip(tangents, in_dims[8:16])]  # (V, K, ...)
                K = next((m.shape[1] for m in moved if m is not None), 1)
                folded = [None if m is None else m.reshape(V * K, *m.shape[2:]) for m in moved]
                if all(m is None for m in folded):
                    folded[0] = primals[0].new_zeros(V * K, *primals[0].shape)
                y_t, h_t = TangentFunction.apply(*primals, *folded, chunk)
                return (y_t.reshape(V, K, *y_t.shape[1:]), h_t.reshape(V, K, *h_t.shape[1:])), (0, 0)
            return _loop_vmap(TangentFunction.apply, V, in_dims, args)

    class ScanFunction(torch.autograd.Function):
        """(x, delta, A, B, C, D, z, h0, chunk) -> (y, h_last, chunk starts).

        The chunk starts (b, nc, E, N) are an output (non-differentiable) so that the backward
        can recompute states from them (functorch requires saved intermediates to be outputs)."""

        @staticmethod
        def forward(x, delta, A, B, C, D, z, h0, chunk):
            return kernels.forward(x, delta, A, B, C, D, z, h0, chunk)

        @staticmethod
        def setup_context(ctx, inputs, output):
            x, delta, A, B, C, D, z, h0, chunk = inputs
            ctx.mark_non_differentiable(output[2])
            ctx.chunk = chunk
            ctx.dtypes = [None if t is None else t.dtype for t in (x, delta, A, B, C, D, z, h0)]
            ctx.save_for_backward(x, delta, A, B, C, D, z, output[2])
            ctx.save_for_forward(x, delta, A, B, C, D, z, h0)

        @staticmethod
        def backward(ctx, dy, dh_last, _dstarts):
            need = ctx.needs_input_grad
            if not kernels.parameter_grads and (need[2] or need[5]):
                raise RuntimeError(
                    f"the {kernels.name} selective scan gives input gradients only; a gradient for A or D was "
                    "requested (freeze the parameters, or use the reference kernels: --kernels reference)"
                )
            x, delta, A, B, C, D, z, starts = ctx.saved_tensors
            dx, ddelta, dB, dC, dz, dh0, dA, dD = AdjointFunction.apply(x, delta, A, B, C, D, z, starts, dy, dh_last, ctx.chunk)
            grads = (dx, ddelta, dA, dB, dC, dD, dz, dh0)
            return (*(_cast(g, dtype, wanted) for g, dtype, wanted in zip(grads, ctx.dtypes, need)), None)

        @staticmethod
        def jvp(ctx, x_t, delta_t, A_t, B_t, C_t, D_t, z_t, h0_t, _chunk_t):
            x, delta, A, B, C, D, z, h0 = ctx.saved_tensors
            # one direction (K = 1); under vmap TangentFunction folds the vmapped dim into K
            tangents = [t.unsqueeze(0) if t is not None else None for t in (x_t, delta_t, A_t, B_t, C_t, D_t, z_t, h0_t)]
            y_t, h_t = TangentFunction.apply(x, delta, A, B, C, D, z, h0, *tangents, ctx.chunk)
            return y_t.squeeze(0), h_t.squeeze(0), None

        @staticmethod
        def vmap(info, in_dims, x, delta, A, B, C, D, z, h0, chunk):
            V = info.batch_size
            dims = in_dims[:8]
            if dims[2] is None and dims[5] is None:  # fold the vmapped dim into the batch dim

                def fold(t, d):
                    moved = _moved(t, d, V)
                    return None if moved is None else moved.reshape(V * moved.shape[1], *moved.shape[2:])

                y, h_last, starts = ScanFunction.apply(
                    fold(x, dims[0]), fold(delta, dims[1]), A, fold(B, dims[3]), fold(C, dims[4]), D,
                    fold(z, dims[6]), fold(h0, dims[7]), chunk,
                )
                unfold = lambda t: t.reshape(V, t.shape[0] // V, *t.shape[1:])  # noqa: E731
                return (unfold(y), unfold(h_last), unfold(starts)), (0, 0, 0)
            return _loop_vmap(ScanFunction.apply, V, in_dims, (x, delta, A, B, C, D, z, h0, chunk))

    for cls in (ScanFunction, TangentFunction, AdjointFunction):
        cls.__qualname__ = cls.__name__ = f"{kernels.name.capitalize()}{cls.__name__}"
    return ScanFunction, TangentFunction, AdjointFunction


# ----------------------------------------------------------------------------------------------
# the backends' kernels (modules imported on first call, looked up at every call), and their functions


def _triton():
    from pgf_kernels.scan import triton

    return triton


def _cpu():
    from pgf_kernels.scan import cpu

    return cpu


def triton_forward(x, delta, A, B, C, D, z, h0, chunk):
    return _triton().scan_forward(x, delta, A, B, C, D, z, h0, chunk=chunk)


def _triton_tangent(primals, tangents, K, chunk):
    _, _, y_t, h_t = _triton().scan_tangent(*primals, tangents, K=K, chunk=chunk, write_primal=False)
    return y_t, h_t


def triton_backward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk):
    return (*_triton().scan_backward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk=chunk), None, None)


def cpu_forward(x, delta, A, B, C, D, z, h0, chunk):
    return _cpu().scan_forward(x, delta, A, B, C, D, z, h0, chunk=chunk)


def _cpu_tangent(primals, tangents, K, chunk):
    return _cpu().scan_tangent(*primals, tangents, K=K)


def cpu_backward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk):
    return _cpu().scan_backward(x, delta, A, B, C, D, z, starts, dy, dh_last, chunk=chunk)


TRITON = KernelSet("Triton", triton_forward, _triton_tangent, triton_backward, parameter_grads=False)
CPU = KernelSet("CPU", cpu_forward, _cpu_tangent, cpu_backward, parameter_grads=True)
TritonScanFunction, TritonTangentFunction, TritonAdjointFunction = scan_functions(TRITON)
CpuScanFunction, CpuTangentFunction, CpuAdjointFunction = scan_functions(CPU)
