"""conftest.py's speed-ups of Triton's interpreter give the interpreter's own numbers, bit for bit:
its `tl.associative_scan` with the scan kernels' combine functions, forward and reversed, on 2-D and
3-D blocks (and the loop it stands for); and the SSD kernels, whose device functions it calls
without patching the language again inside a launch."""

import pytest
import torch

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")
interpreter = pytest.importorskip("triton.runtime.interpreter")

from pgf_kernels.scan.triton_util import affine_combine, tangent_combine  # noqa: E402

replaced = pytest.mark.skipif(not hasattr(interpreter.ScanOps, "stock_generic_scan"),
                              reason="the interpreter's scan is not replaced here (CUDA, or another Triton)")


@triton.jit
def _affine_scan(a_ptr, b_ptr, a_out, b_out, T: tl.constexpr, E: tl.constexpr, REVERSE: tl.constexpr):
    offsets = tl.arange(0, T)[:, None] * E + tl.arange(0, E)[None, :]
    a, b = tl.associative_scan((tl.load(a_ptr + offsets), tl.load(b_ptr + offsets)), 0, affine_combine, reverse=REVERSE)
    tl.store(a_out + offsets, a)
    tl.store(b_out + offsets, b)


@triton.jit
def _tangent_scan(p_ptr, q_ptr, l_ptr, m_ptr, out_ptr, T: tl.constexpr, E: tl.constexpr, N: tl.constexpr):
    offsets = (tl.arange(0, T)[:, None, None] * E + tl.arange(0, E)[None, :, None]) * N + tl.arange(0, N)[None, None, :]
    size = T * E * N
    p, q, l, m = tl.associative_scan((tl.load(p_ptr + offsets), tl.load(q_ptr + offsets), tl.load(l_ptr + offsets),
                                      tl.load(m_ptr + offsets)), 0, tangent_combine)
    tl.store(out_ptr + offsets, p)
    tl.store(out_ptr + size + offsets, q)
    tl.store(out_ptr + 2 * size + offsets, l)
    tl.store(out_ptr + 3 * size + offsets, m)


def both_ways(monkeypatch, run):
    """run() with conftest.py's scan, then with the interpreter's own."""
    faster = run()
    monkeypatch.setattr(interpreter.ScanOps, "generic_scan", interpreter.ScanOps.stock_generic_scan)
    return faster, run()


@replaced
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reverse", [False, True])
def test_affine_scan_is_the_interpreters(monkeypatch, dtype, reverse):
    T, E = 16, 4
    g = torch.Generator().manual_seed(0)
    a = torch.rand(T, E, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(T, E, generator=g, dtype=torch.float64).to(dtype)

    def run():
        a_out, b_out = torch.full_like(a, float("nan")), torch.full_like(b, float("nan"))
        _affine_scan[(1,)](a, b, a_out, b_out, T=T, E=E, REVERSE=reverse)
        return a_out, b_out

    (a_fast, b_fast), (a_stock, b_stock) = both_ways(monkeypatch, run)
    assert torch.equal(a_fast, a_stock) and torch.equal(b_fast, b_stock)
    # and what it computes: the running composition of the maps h -> a h + b
    order = range(T - 1, -1, -1) if reverse else range(T)
    h, previous = torch.zeros(E, dtype=torch.float64), None
    for t in order:
        h = b[t].double() if previous is None else a[t].double() * h + b[t].double()
        previous = t
        torch.testing.assert_close(b_fast[t].double(), h, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-6)


@replaced
def test_tangent_scan_of_four_operands_is_the_interpreters(monkeypatch):
    T, E, N = 8, 2, 4
    g = torch.Generator().manual_seed(1)
    p, q, l, m = (torch.randn(T, E, N, generator=g, dtype=torch.float64) for _ in range(4))

    def run():
        out = torch.full((4, T, E, N), float("nan"), dtype=torch.float64)
        _tangent_scan[(1,)](p, q, l, m, out, T=T, E=E, N=N)
        return out

    fast, stock = both_ways(monkeypatch, run)
    assert torch.isfinite(fast).all() and torch.equal(fast, stock)


@pytest.mark.skipif(not hasattr(interpreter, "stock_patch_lang"),
                    reason="the interpreter's language patching is unchanged here (CUDA, or another Triton)")
def test_ssd_kernels_without_the_repeated_patching_give_the_same_numbers(monkeypatch):
    from pgf_kernels.ssd import triton as ssd_triton

    from test_kernels_ssd import cotangents, inputs

    args = inputs(11, 2, 4, 4, 2, 1, seed=11, device=torch.device("cpu"))  # 3 chunks of 4, 2 groups
    x, dt, A, B, C, D, h0 = args
    g = torch.Generator().manual_seed(3)
    tangents = [torch.randn(2, *t.shape, generator=g, dtype=torch.float64) for t in args]
    dy, dh = cotangents(args, seed=30)

    def run():
        y, h, starts = ssd_triton.ssd_forward(*args, chunk=4)
        grads = ssd_triton.ssd_backward(x, dt, A, B, C, D, starts, dy, dh, chunk=4)
        return [y, h, starts, *grads, *ssd_triton.ssd_tangent(*args, tangents, chunk=4)]

    faster = run()
    monkeypatch.setattr(interpreter, "_patch_lang", interpreter.stock_patch_lang)
    monkeypatch.setattr(interpreter.GridExecutor, "__call__", interpreter.GridExecutor.stock_call)
    stock = run()
    assert len(faster) == len(stock) == 12
    assert all(torch.isfinite(a).all() and torch.equal(a, b) for a, b in zip(faster, stock))
