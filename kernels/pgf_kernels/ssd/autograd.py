"""The Triton SSD kernels as autograd functions, with backward, jvp and vmap rules.

As the selective scan's (`pgf_kernels.scan.autograd`), whose vmap helpers it reuses: plain
autograd runs the adjoint kernel, `torch.func.jvp` the tangent kernel, and
`vmap(lambda t: jvp(f, primals, (t,)))` (one primal, many tangents) folds the vmapped dimension
into the tangent kernel's K directions; vmap of the primal folds it into the batch. The adjoint
gives every gradient (dA and dD included). Derivatives of derivatives are refused.
"""

from __future__ import annotations

import torch

from pgf_kernels.scan.autograd import _cast, _directions, _loop_vmap, _moved


def _triton():
    from pgf_kernels.ssd import triton

    return triton


def _no_higher_order(*_):
    raise RuntimeError(
        "derivatives of the Triton SSD scan's derivatives are not supported; use the reference or cpu kernels"
    )


class TritonSsdAdjointFunction(torch.autograd.Function):
    """(x, dt, A, B, C, D, starts, dy, dh_last, chunk) -> (dx, ddt, dB, dC, dh0, dA, dD); dD absent: empty."""

    @staticmethod
    def forward(x, dt, A, B, C, D, starts, dy, dh_last, chunk):
        grads = _triton().ssd_backward(x, dt, A, B, C, D, starts, dy, dh_last, chunk=chunk)
        return tuple(x.new_empty(0) if g is None else g for g in grads)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    backward = staticmethod(_no_higher_order)
    jvp = staticmethod(_no_higher_order)

    @staticmethod
    def vmap(info, in_dims, *args):
        return _loop_vmap(TritonSsdAdjointFunction.apply, info.batch_size, in_dims, args)


class TritonSsdTangentFunction(torch.autograd.Function):
    """(primals (7), tangents with a leading K (7), chunk) -> (y' (K, b, L, H, P), h_last' (K, b, H, P, N))."""

    @staticmethod
    def forward(x, dt, A, B, C, D, h0, xt, dtt, At, Bt, Ct, Dt, h0t, chunk):
        tangents = (xt, dtt, At, Bt, Ct, Dt, h0t)
        return _triton().ssd_tangent(x, dt, A, B, C, D, h0, tangents, K=_directions(tangents), chunk=chunk)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    backward = staticmethod(_no_higher_order)
    jvp = staticmethod(_no_higher_order)

    @staticmethod
    def vmap(info, in_dims, *args):
        V = info.batch_size
        primals, tangents, chunk = args[:7], args[7:14], args[14]
        if any(d is not None for d in in_dims[:7]):
            return _loop_vmap(TritonSsdTangentFunction.apply, V, in_dims, args)
        # one primal (the tangent engine): the vmapped dimension becomes more directions
        moved = [_moved(t, d, V) for t, d in zip(tangents, in_dims[7:14])]  # (V, K, ...)
        K = next((m.shape[1] for m in moved if m is not None), 1)
        folded = [None if m is None else m.reshape(V * K, *m.shape[2:]) for m in moved]
        if all(m is None for m in folded):
            folded[0] = primals[0].new_zeros(V * K, *primals[0].shape)
        y_t, h_t = TritonSsdTangentFunction.apply(*primals, *folded, chunk)
        return (y_t.reshape(V, K, *y_t.shape[1:]), h_t.reshape(V, K, *h_t.shape[1:])), (0, 0)


class TritonSsdFunction(torch.autograd.Function):
    """(x, dt, A, B, C, D, h0, chunk) -> (y, h_last, chunk starts).

    The chunk starts (b, nc, H, P, N) are a (non-differentiable) output so that the backward can
    recompute from them (functorch wants saved intermediates to be outputs)."""

    @staticmethod
    def forward(x, dt, A, B, C, D, h0, chunk):
        return _triton().ssd_forward(x, dt, A, B, C, D, h0, chunk=chunk)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, dt, A, B, C, D, h0, chunk = inputs
        ctx.mark_non_differentiable(output[2])
        ctx.chunk = chunk
        ctx.dtypes = [None if t is None else t.dtype for t in (x, dt, A, B, C, D, h0)]
        ctx.save_for_backward(x, dt, A, B, C, D, output[2])
        ctx.save_for_forward(x, dt, A, B, C, D, h0)

    @staticmethod
    def backward(ctx, dy, dh_last, _dstarts):
        x, dt, A, B, C, D, starts = ctx.saved_tensors
        dx, ddt, dB, dC, dh0, dA, dD = TritonSsdAdjointFunction.apply(x, dt, A, B, C, D, starts, dy, dh_last, ctx.chunk)
        grads = (dx, ddt, dA, dB, dC, dD, dh0)
        return (*(_cast(g, dtype, wanted) for g, dtype, wanted in zip(grads, ctx.dtypes, ctx.needs_input_grad)), None)

    @staticmethod
    def jvp(ctx, xt, dtt, At, Bt, Ct, Dt, h0t, _chunk_t):
        x, dt, A, B, C, D, h0 = ctx.saved_tensors
        # one direction (K = 1); under vmap the tangent function folds the vmapped dim into K
        tangents = [None if t is None else t.unsqueeze(0) for t in (xt, dtt, At, Bt, Ct, Dt, h0t)]
        y_t, h_t = TritonSsdTangentFunction.apply(x, dt, A, B, C, D, h0, *tangents, ctx.chunk)
        return y_t.squeeze(0), h_t.squeeze(0), None

    @staticmethod
    def vmap(info, in_dims, x, dt, A, B, C, D, h0, chunk):
        V = info.batch_size
        dims = in_dims[:7]
        if dims[2] is not None or dims[5] is not None:
            return _loop_vmap(TritonSsdFunction.apply, V, in_dims, (x, dt, A, B, C, D, h0, chunk))

        def fold(t, d):  # the vmapped dim into the batch dim
            moved = _moved(t, d, V)
            return None if moved is None else moved.reshape(V * moved.shape[1], *moved.shape[2:])

        y, h_last, starts = TritonSsdFunction.apply(
            fold(x, dims[0]), fold(dt, dims[1]), A, fold(B, dims[3]), fold(C, dims[4]), D, fold(h0, dims[6]), chunk
        )
        unfold = lambda t: t.reshape(V, t.shape[0] // V, *t.shape[1:])  # noqa: E731
        return (unfold(y), unfold(h_last), unfold(starts)), (0, 0, 0)
