"""The causal depthwise conv + SiLU's Triton kernels (pgf_kernels.conv.triton) against the PyTorch
reference, in fp64 (1e-12) and fp32 (2e-5): values, input gradients (x and the carried tail) by
autograd, tangents (torch.func.jvp, also of the weight and bias; vmap of jvp over many
directions: one kernel call), vmap of the primal and of the VJP, strided x, tiles shorter than
the kernel and empty ones, blocks that divide neither T nor E; and which kernel `causal_conv1d`
runs for backend="triton".

On a machine with CUDA the compiled kernels on the GPU; without it Triton's interpreter on CPU
(conftest.py sets TRITON_INTERPRET=1 before anything imports Triton), which is slow, hence the
small shapes; the kernel tests are `slow` there. Every buffer the Triton wrappers allocate
starts as NaN, so a missed write fails.
"""

import pytest
import torch
from torch.func import jvp, vjp, vmap

from pgf_kernels import backends, causal_conv1d, causal_conv1d_ref
from pgf_kernels.conv import conv_backend

try:
    from pgf_kernels import triton_common
    from pgf_kernels.conv import triton as conv_triton
    from pgf_kernels.conv import triton_kernels
except ImportError:  # Triton is a dependency on Linux only
    triton_common = conv_triton = triton_kernels = None

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
RUNNABLE = conv_triton is not None and (DEVICE.type == "cuda" or conv_triton.interpreted())
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=2e-5, atol=2e-5)}


def triton_kernels_test(test):
    """A test of the Triton kernels: skipped where they cannot run, `slow` when interpreted (CPU)."""
    test = pytest.mark.skipif(not RUNNABLE, reason="no Triton, or no CUDA and the Triton interpreter is off")(test)
    return test if torch.cuda.is_available() else pytest.mark.slow(test)


@pytest.fixture(autouse=True)
def nan_scratch():
    """Every output and scratch buffer of the Triton wrappers starts as NaN."""
    if triton_common is None:
        yield
        return
    previous, triton_common.NAN_FILL = triton_common.NAN_FILL, True
    yield
    triton_common.NAN_FILL = previous


def make(T, dtype=torch.float64, b=2, E=24, K=4, seed=0, with_bias=True):
    """(x, tail, weight, bias); x a strided half of a wider tensor, as the mixer's in_proj chunk."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64).to(DEVICE, dtype)  # noqa: E731
    x = r(b, T, 2 * E)[..., :E]
    return x, r(b, E, K - 1), r(E, K), r(E) if with_bias else None


def randn_like(t, seed, *lead):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*lead, *t.shape, generator=g, dtype=torch.float64).to(DEVICE, t.dtype)


def triton_conv(x, tail, weight, bias):
    return conv_triton.TritonCausalConvFunction.apply(x, tail, weight, bias)


@triton_kernels_test
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("T", [130, 37, 2, 1])
def test_values_and_input_gradients_equal_the_reference(dtype, T):
    for with_bias in (True, False):
        x, tail, weight, bias = make(T, dtype, with_bias=with_bias)
        assert x.stride() == (T * 48, 48, 1)  # strided, not copied by the test
        torch.testing.assert_close(triton_conv(x, tail, weight, bias), causal_conv1d_ref(x, tail, weight, bias), **TOL[dtype])
        dy = randn_like(x, 5)
        grads = []
        for function in (causal_conv1d_ref, triton_conv):
            xr, tr = x.detach().clone().requires_grad_(), tail.clone().requires_grad_()
            grads.append(torch.autograd.grad(function(xr, tr, weight, bias), (xr, tr), dy))
        for got, want in zip(grads[1], grads[0]):
            assert got.dtype == want.dtype
            torch.testing.assert_close(got, want, **TOL[dtype])


@triton_kernels_test
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_blocks_that_divide_neither_T_nor_E(dtype):
    """Launchers with small blocks: 37 positions in blocks of 8, 24 channels in blocks of 16, 3
    directions in blocks of 2; dy strided."""
    x, tail, weight, bias = make(37, dtype)
    blocks = {"t": 8, "e": 16, "k": 2}
    torch.testing.assert_close(triton_kernels.conv_forward(x, tail, weight, bias, blocks=blocks),
                               causal_conv1d_ref(x, tail, weight, bias), **TOL[dtype])
    dy = randn_like(x, 6, 2)[1]  # (b, T, E) a slice
    xr, tr = x.detach().clone().requires_grad_(), tail.clone().requires_grad_()
    want = torch.autograd.grad(causal_conv1d_ref(xr, tr, weight, bias), (xr, tr), dy)
    for got, expected in zip(triton_kernels.conv_input_vjp(x, tail, weight, bias, dy, blocks=blocks), want):
        torch.testing.assert_close(got, expected, **TOL[dtype])
    tangents = (randn_like(x, 7, 3), randn_like(tail, 8, 3), randn_like(weight, 9, 3), randn_like(bias, 10, 3))
    got = triton_kernels.conv_tangent(x, tail, weight, bias, tangents, blocks=blocks)
    expected = torch.stack([jvp(causal_conv1d_ref, (x, tail, weight, bias), tuple(t[k] for t in tangents))[1] for k in range(3)])
    torch.testing.assert_close(got, expected, **TOL[dtype])


@triton_kernels_test
@pytest.mark.parametrize("T", [37, 2])
def test_jvp_one_direction_and_of_every_input(T):
    x, tail, weight, bias = make(T)
    tangents = (randn_like(x, 11), randn_like(tail, 12), randn_like(weight, 13), randn_like(bias, 14))
    for args in ((0, 1), (2, 3), (0, 1, 2, 3), (1,)):
        results = []
        for function in (causal_conv1d_ref, triton_conv):
            def partial(*picked):
                full = [x, tail, weight, bias]
                for index, value in zip(args, picked):
                    full[index] = value
                return function(*full)

            results.append(jvp(partial, tuple((x, tail, weight, bias)[i] for i in args), tuple(tangents[i] for i in args)))
        for got, want in zip(results[1], results[0]):
            torch.testing.assert_close(got, want, **TOL[torch.float64])
    x, tail, weight, _ = make(T, with_bias=False)
    got = jvp(lambda a, w: triton_conv(a, tail, w, None), (x, weight), (tangents[0], tangents[2]))
    want = jvp(lambda a, w: causal_conv1d_ref(a, tail, w, None), (x, weight), (tangents[0], tangents[2]))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


@triton_kernels_test
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_vmap_of_jvp_folds_many_directions_into_one_kernel_call(dtype, monkeypatch):
    """The tangent engine's pattern: one unbatched primal, V tangents of x and the tail."""
    V = 9
    x, tail, weight, bias = make(37, dtype)
    xs, tails = randn_like(x, 15, V), randn_like(tail, 16, V)
    calls = []
    real = triton_kernels.conv_tangent
    monkeypatch.setattr(triton_kernels, "conv_tangent", lambda *a, **k: calls.append(k.get("K")) or real(*a, **k))
    results = []
    for function in (causal_conv1d_ref, triton_conv):
        tile = lambda a, c: function(a, c, weight, bias)  # noqa: E731
        results.append(vmap(lambda a, c: jvp(tile, (x, tail), (a, c)), out_dims=(None, 0))(xs, tails))
    assert calls == [V]
    assert results[1][1].shape == (V, *x.shape)
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, **TOL[dtype])
    # tangents of x only (the tail's absent), and of the weight in every direction
    calls.clear()
    weights = randn_like(weight, 17, V)
    for function, index in ((causal_conv1d_ref, 0), (triton_conv, 1)):
        results[index] = (vmap(lambda a: jvp(lambda p: function(p, tail, weight, bias), (x,), (a,))[1])(xs),
                          vmap(lambda w: jvp(lambda p: function(x, tail, p, bias), (weight,), (w,))[1])(weights))
    assert calls == [V, V]
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, **TOL[dtype])


@triton_kernels_test
def test_vmap_of_the_primal_of_the_vjp_and_of_batched_weights():
    x, tail, weight, bias = make(30)
    xs, tails = torch.stack([x, 2 * x, -x]), torch.stack([tail, -tail, tail])
    got = vmap(lambda a, c: triton_conv(a, c, weight, bias))(xs, tails)
    want = vmap(lambda a, c: causal_conv1d_ref(a, c, weight, bias))(xs, tails)
    torch.testing.assert_close(got, want, **TOL[torch.float64])
    weights = torch.stack([weight, -weight, 0.5 * weight])
    got = vmap(lambda w: triton_conv(x, tail, w, bias))(weights)  # one call per weight
    torch.testing.assert_close(got, vmap(lambda w: causal_conv1d_ref(x, tail, w, bias))(weights), **TOL[torch.float64])
    dys = randn_like(x, 18, 4)
    _, pull = vjp(lambda a, c: triton_conv(a, c, weight, bias), x, tail)
    _, pull_ref = vjp(lambda a, c: causal_conv1d_ref(a, c, weight, bias), x, tail)
    for a, b in zip(vmap(pull)(dys), vmap(pull_ref)(dys)):
        torch.testing.assert_close(a, b, **TOL[torch.float64])
    # batched primals under vmap of jvp: one call per slice
    ts = randn_like(x, 19, 3)
    got = vmap(lambda a, t: jvp(lambda p: triton_conv(p, tail, weight, bias), (a,), (t,)))(xs, ts)
    want = vmap(lambda a, t: jvp(lambda p: causal_conv1d_ref(p, tail, weight, bias), (a,), (t,)))(xs, ts)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


@triton_kernels_test
@pytest.mark.parametrize("width", [1, 2])
def test_narrow_kernels_and_empty_tiles(width):
    x, tail, weight, bias = make(9, K=width)
    torch.testing.assert_close(triton_conv(x, tail, weight, bias), causal_conv1d_ref(x, tail, weight, bias), **TOL[torch.float64])
    xr, tr = x.detach().clone().requires_grad_(), tail.clone().requires_grad_()
    dy = randn_like(x, 20)
    want = torch.autograd.grad(causal_conv1d_ref(xr, tr, weight, bias), (xr, tr), dy, allow_unused=True)
    got = triton_kernels.conv_input_vjp(x, tail, weight, bias, dy)
    torch.testing.assert_close(got[0], want[0], **TOL[torch.float64])
    assert got[1].shape == tail.shape
    if width > 1:
        torch.testing.assert_close(got[1], want[1], **TOL[torch.float64])
    tangents = (randn_like(x, 21, 2), randn_like(tail, 22, 2), None, None)
    expected = torch.stack([jvp(lambda a, c: causal_conv1d_ref(a, c, weight, bias), (x, tail), (tangents[0][k], tangents[1][k]))[1]
                            for k in range(2)])
    torch.testing.assert_close(triton_kernels.conv_tangent(x, tail, weight, bias, tangents), expected, **TOL[torch.float64])
    # an empty tile: nothing out, and the tail's gradient is zero (the reference cannot run it)
    x0, tail0, weight0, bias0 = make(0, K=4)
    assert triton_conv(x0, tail0, weight0, bias0).shape == (2, 0, 24)
    dx, dtail = triton_kernels.conv_input_vjp(x0, tail0, weight0, bias0, x0)
    assert dx.shape == (2, 0, 24) and torch.equal(dtail, torch.zeros_like(tail0))


@triton_kernels_test
def test_weight_and_bias_gradients_are_refused():
    x, tail, weight, bias = make(10)
    for index in (2, 3):
        leaves = [x, tail, weight, bias]
        leaves[index] = leaves[index].clone().requires_grad_()
        with pytest.raises(RuntimeError, match="input gradients only"):
            triton_conv(*leaves).sum().backward()


# --------------------------------------------------------------------------------------------
# which kernel runs


@triton_kernels_test
def test_causal_conv1d_runs_the_triton_kernels_when_asked(monkeypatch):
    x, tail, weight, bias = make(20)
    assert conv_backend(x, weight, bias, "triton") == "triton"
    calls = []
    real = triton_kernels.conv_forward
    monkeypatch.setattr(triton_kernels, "conv_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    got = causal_conv1d(x, tail, weight, bias, backend="triton")
    assert calls == [1]
    torch.testing.assert_close(got, causal_conv1d_ref(x, tail, weight, bias), **TOL[torch.float64])
    with torch.enable_grad():  # a weight gradient is wanted: the reference, for every backend
        trained = weight.clone().requires_grad_()
        assert conv_backend(x, trained, bias, "triton") == "reference"
        causal_conv1d(x, tail, trained, bias, backend="triton").sum().backward()
        assert calls == [1] and trained.grad is not None
    if DEVICE.type == "cuda":
        assert conv_backend(x, weight, bias, "auto") == "triton" == conv_backend(x, weight, bias)


def test_forced_triton_where_it_cannot_run_is_an_error(monkeypatch):
    x, tail, weight, bias = make(4)
    meta = torch.zeros(2, 4, 24, device="meta")
    with pytest.raises(RuntimeError, match="kernel backend 'triton' cannot run here"):
        conv_backend(meta, weight, bias, "triton")
    assert conv_backend(meta, weight, bias, "auto") == "reference"
    if triton_common is not None:  # as if TRITON_INTERPRET=1 had not been set before the import
        monkeypatch.setattr(triton_common, "interpreted", lambda: False)
    cpu = x.cpu()
    with pytest.raises(RuntimeError, match="kernel backend 'triton' cannot run here: .*(CUDA tensors|not installed)"):
        conv_backend(cpu, weight, bias, "triton")
    with torch.enable_grad(), pytest.raises(RuntimeError, match="cannot run here"):
        causal_conv1d(cpu, tail.cpu(), weight.cpu().requires_grad_(), bias.cpu(), backend="triton")
    monkeypatch.setattr(backends, "_triton_module", lambda: None)
    with pytest.raises(RuntimeError, match="Triton is not installed"):
        conv_backend(cpu, weight, bias, "triton")
