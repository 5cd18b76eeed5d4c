"""The causal depthwise conv + SiLU against the PyTorch reference: the compiled CPU kernel (numba;
pgf_kernels.conv.cpu): values, input gradients (x and the carried tail), tangents (also vmapped
over directions and for the weights), for strided inputs and tiles shorter than the kernel; and
which kernel `causal_conv1d` runs (`backend=`, None meaning "auto": a compiled kernel only where
no weight gradient is wanted). The Triton kernels (pgf_kernels.conv.triton) are tested in
test_kernels_conv_triton.py.

Every buffer the CPU kernel's wrappers allocate is filled with NaN first, so a missed write fails."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import jvp, vmap

from pgf_kernels import backends, causal_conv1d, causal_conv1d_ref, cpu_common
from pgf_kernels.conv import conv_backend
from pgf_kernels.conv import cpu as conv_cpu
from pgf_kernels.conv import ops as conv_ops

TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=2e-5, atol=2e-5)}
needs_numba = pytest.mark.skipif(not cpu_common.available(), reason="numba is not installed")


@pytest.fixture(autouse=True)
def nan_scratch():
    previous, cpu_common.NAN_FILL = cpu_common.NAN_FILL, True
    yield
    cpu_common.NAN_FILL = previous


def make(T, dtype, b=2, E=24, K=4, seed=0, with_bias=True):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    x = r(b, T, 2 * E)[..., :E]  # a strided half, as the mixer's in_proj chunk
    return x, r(b, E, K - 1), r(E, K), r(E) if with_bias else None


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("T", [1000, 3, 1])
@pytest.mark.parametrize("with_bias", [True, False])
def test_values_and_input_gradients_equal_the_reference(dtype, T, with_bias):
    x, tail, weight, bias = make(T, dtype, with_bias=with_bias)
    torch.testing.assert_close(conv_cpu.CpuCausalConvFunction.apply(x, tail, weight, bias),
                               causal_conv1d_ref(x, tail, weight, bias), **TOL[dtype])
    dy = torch.randn(x.shape, dtype=dtype, generator=torch.Generator().manual_seed(5))
    grads = []
    for function in (causal_conv1d_ref, conv_cpu.CpuCausalConvFunction.apply):
        xr, tr = x.detach().clone().requires_grad_(), tail.clone().requires_grad_()
        grads.append(torch.autograd.grad(function(xr, tr, weight, bias), (xr, tr), dy))
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, **TOL[dtype])


@needs_numba
@pytest.mark.parametrize("T", [700, 2])
def test_tangents_equal_the_reference_one_and_many_directions(T):
    x, tail, weight, bias = make(T, torch.float64)
    g = torch.Generator().manual_seed(7)
    xt, tt = torch.randn(3, *x.shape, generator=g, dtype=torch.float64), torch.randn(3, *tail.shape, generator=g, dtype=torch.float64)
    wt, bt = torch.randn(weight.shape, generator=g, dtype=torch.float64), torch.randn(bias.shape, generator=g, dtype=torch.float64)
    results = []
    for function in (causal_conv1d_ref, conv_cpu.CpuCausalConvFunction.apply):
        one = jvp(lambda a, c: function(a, c, weight, bias), (x, tail), (xt[0], tt[0]))
        many = vmap(lambda a, c: jvp(lambda p, q: function(p, q, weight, bias), (x, tail), (a, c))[1])(xt, tt)
        weights = jvp(lambda w, bb: function(x, tail, w, bb), (weight, bias), (wt, bt))[1]
        results.append((*one, many, weights))
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, **TOL[torch.float64])


@needs_numba
def test_vmap_of_the_primal_folds_rows():
    x, tail, weight, bias = make(50, torch.float64)
    xs, tails = torch.stack([x, 2 * x]), torch.stack([tail, -tail])
    got = vmap(lambda a, c: conv_cpu.CpuCausalConvFunction.apply(a, c, weight, bias))(xs, tails)
    want = torch.stack([causal_conv1d_ref(a, c, weight, bias) for a, c in zip(xs, tails)])
    torch.testing.assert_close(got, want, **TOL[torch.float64])


@needs_numba
def test_dispatch_keeps_the_reference_when_weights_want_gradients(monkeypatch):
    x, tail, weight, bias = make(20, torch.float64)
    calls = []
    real = conv_cpu.conv_forward
    monkeypatch.setattr(conv_cpu, "conv_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    for backend in ("auto", None):  # None: auto
        calls.clear()
        frozen = causal_conv1d(x, tail, weight, bias, backend=backend)
        assert calls == [1]
        trained = causal_conv1d(x, tail, weight.clone().requires_grad_(), bias, backend=backend)
        assert calls == [1] and trained.grad_fn is not None
    causal_conv1d(x, tail, weight, bias, backend="reference")
    assert calls == [1]
    torch.testing.assert_close(frozen, trained.detach(), **TOL[torch.float64])


@pytest.mark.parametrize("T", [5, 1])
def test_reference_is_the_silu_of_the_causal_sum(T):
    """The reference against its definition: silu(bias + sum_k weight[:, k] u[t + k]), u = [tail ; x]."""
    x, tail, weight, bias = make(T, torch.float64, E=5, K=4)
    u = torch.cat([tail.transpose(1, 2), x], dim=1)  # (b, K-1+T, E)
    K = weight.shape[1]
    expected = torch.stack([F.silu(bias + sum(weight[:, k] * u[:, t + k] for k in range(K))) for t in range(T)], dim=1)
    torch.testing.assert_close(causal_conv1d_ref(x, tail, weight, bias), expected, **TOL[torch.float64])


def test_conv_backend_rule(monkeypatch):
    """The CPU kernel where the scan's CPU kernels would run ("cpu", or "auto" on CPU tensors with
    numba) and no weight or bias gradient is wanted; the reference otherwise."""
    x, tail, weight, bias = make(4, torch.float64)
    trained = weight.clone().requires_grad_()
    meta = x.to("meta")
    monkeypatch.setattr(backends, "_cpu_module", lambda: cpu_common)
    assert conv_backend(x, weight, bias, "auto") == "cpu"
    assert conv_backend(x, weight, bias, "cpu") == "cpu"
    assert conv_backend(x, weight, bias, "reference") == "reference"
    if backends.triton_unavailable_reason(x.device) is None:  # Triton's interpreter (conftest.py) on CPU
        assert conv_backend(x, weight, bias, "triton") == "triton"
        with torch.enable_grad():
            assert conv_backend(x, trained, bias, "triton") == "reference"
    else:
        with pytest.raises(RuntimeError, match="kernel backend 'triton' cannot run here"):
            conv_backend(x, weight, bias, "triton")
    assert conv_backend(meta, weight, bias, "auto") == "reference"
    with torch.enable_grad():
        for backend in ("auto", "cpu"):
            assert conv_backend(x, trained, bias, backend) == "reference"
            assert conv_backend(x, weight, bias.clone().requires_grad_(), backend) == "reference"
    with torch.no_grad():
        assert conv_backend(x, trained, bias, "auto") == "cpu"
    with pytest.raises(RuntimeError, match="kernel backend 'cpu' cannot run here: the CPU kernels need CPU tensors"):
        conv_backend(meta, weight, bias, "cpu")
    assert conv_backend(x, weight, bias) == "cpu"  # None: auto
    assert conv_backend(meta, weight, bias) == "reference"
    with torch.enable_grad():
        assert conv_backend(x, trained, bias) == "reference"
    with pytest.raises(ValueError, match="reference, triton, auto"):
        conv_backend(x, weight, bias, "fast")
    monkeypatch.setattr(backends, "_cpu_module", lambda: None)
    assert conv_backend(x, weight, bias, "auto") == "reference"
    with pytest.raises(RuntimeError, match="numba is not installed"):
        conv_backend(x, weight, bias, "cpu")


def refuse(what):
    def run(*args, **kwargs):
        raise AssertionError(f"{what} ran")

    return run


@needs_numba
def test_explicit_backend_beats_the_auto_rule(monkeypatch):
    """`causal_conv1d` runs the backend it is given whatever the auto rule would pick, the auto rule
    only where `backend` is None: checked by which code runs (the other backend's entry raises)."""
    x, tail, weight, bias = make(30, torch.float64)
    expected = causal_conv1d_ref(x, tail, weight, bias)
    with monkeypatch.context() as patch:
        patch.setattr(conv_cpu, "conv_forward", refuse("the CPU kernel"))
        # auto would run the CPU kernel on these CPU tensors
        assert torch.equal(causal_conv1d(x, tail, weight, bias, backend="reference"), expected)
        if backends.triton_unavailable_reason(x.device) is None:  # the Triton kernels (interpreted on CPU)
            torch.testing.assert_close(causal_conv1d(x, tail, weight, bias, backend="triton"), expected,
                                       **TOL[torch.float64])
        with pytest.raises(AssertionError, match="the CPU kernel ran"):
            causal_conv1d(x, tail, weight, bias)  # None: auto
    calls = []
    real = conv_cpu.conv_forward
    monkeypatch.setattr(conv_cpu, "conv_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(conv_ops, "causal_conv1d_ref", refuse("the reference"))
    got = causal_conv1d(x, tail, weight, bias, backend="cpu")
    assert calls == [1]
    with torch.enable_grad():  # the weight wants a gradient: auto would keep the reference
        with pytest.raises(AssertionError, match="the reference ran"):
            causal_conv1d(x, tail, weight.clone().requires_grad_(), bias, backend=None)
    torch.testing.assert_close(got, expected, **TOL[torch.float64])
