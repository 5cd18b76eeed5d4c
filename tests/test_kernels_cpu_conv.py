"""The compiled CPU causal conv + SiLU (pgf_kernels.cpu_conv) equals the PyTorch reference:
values, input gradients (x and the carried tail), tangents (also vmapped over directions and
for the weights), for strided inputs and tiles shorter than the kernel; and `causal_conv1d`
picks it only where no weight gradient is wanted."""

import pytest
import torch
from torch.func import jvp, vmap

pytest.importorskip("numba")

from pgf_kernels import causal_conv1d, causal_conv1d_ref, kernel_backend  # noqa: E402
from pgf_kernels import cpu_conv, cpu_scan  # noqa: E402

TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=2e-5, atol=2e-5)}


@pytest.fixture(autouse=True)
def nan_scratch():
    previous, cpu_scan.NAN_FILL = cpu_scan.NAN_FILL, True
    yield
    cpu_scan.NAN_FILL = previous


def make(T, dtype, b=2, E=24, K=4, seed=0, with_bias=True):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    x = r(b, T, 2 * E)[..., :E]  # a strided half, as the mixer's in_proj chunk
    return x, r(b, E, K - 1), r(E, K), r(E) if with_bias else None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("T", [1000, 3, 1])
@pytest.mark.parametrize("with_bias", [True, False])
def test_values_and_input_gradients_equal_the_reference(dtype, T, with_bias):
    x, tail, weight, bias = make(T, dtype, with_bias=with_bias)
    torch.testing.assert_close(cpu_conv.CpuCausalConvFunction.apply(x, tail, weight, bias),
                               causal_conv1d_ref(x, tail, weight, bias), **TOL[dtype])
    dy = torch.randn(x.shape, dtype=dtype, generator=torch.Generator().manual_seed(5))
    grads = []
    for function in (causal_conv1d_ref, cpu_conv.CpuCausalConvFunction.apply):
        xr, tr = x.detach().clone().requires_grad_(), tail.clone().requires_grad_()
        grads.append(torch.autograd.grad(function(xr, tr, weight, bias), (xr, tr), dy))
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, **TOL[dtype])


@pytest.mark.parametrize("T", [700, 2])
def test_tangents_equal_the_reference_one_and_many_directions(T):
    x, tail, weight, bias = make(T, torch.float64)
    g = torch.Generator().manual_seed(7)
    xt, tt = torch.randn(3, *x.shape, generator=g, dtype=torch.float64), torch.randn(3, *tail.shape, generator=g, dtype=torch.float64)
    wt, bt = torch.randn(weight.shape, generator=g, dtype=torch.float64), torch.randn(bias.shape, generator=g, dtype=torch.float64)
    results = []
    for function in (causal_conv1d_ref, cpu_conv.CpuCausalConvFunction.apply):
        one = jvp(lambda a, c: function(a, c, weight, bias), (x, tail), (xt[0], tt[0]))
        many = vmap(lambda a, c: jvp(lambda p, q: function(p, q, weight, bias), (x, tail), (a, c))[1])(xt, tt)
        weights = jvp(lambda w, bb: function(x, tail, w, bb), (weight, bias), (wt, bt))[1]
        results.append((*one, many, weights))
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, **TOL[torch.float64])


def test_vmap_of_the_primal_folds_rows():
    x, tail, weight, bias = make(50, torch.float64)
    xs, tails = torch.stack([x, 2 * x]), torch.stack([tail, -tail])
    got = vmap(lambda a, c: cpu_conv.CpuCausalConvFunction.apply(a, c, weight, bias))(xs, tails)
    want = torch.stack([causal_conv1d_ref(a, c, weight, bias) for a, c in zip(xs, tails)])
    torch.testing.assert_close(got, want, **TOL[torch.float64])


def test_dispatch_keeps_the_reference_when_weights_want_gradients(monkeypatch):
    x, tail, weight, bias = make(20, torch.float64)
    calls = []
    real = cpu_conv.conv_forward
    monkeypatch.setattr(cpu_conv, "conv_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    with kernel_backend("auto"):
        frozen = causal_conv1d(x, tail, weight, bias)
        assert calls == [1]
        trained = causal_conv1d(x, tail, weight.clone().requires_grad_(), bias)
        assert calls == [1] and trained.grad_fn is not None
    with kernel_backend("reference"):
        causal_conv1d(x, tail, weight, bias)
        assert calls == [1]
    torch.testing.assert_close(frozen, trained.detach(), **TOL[torch.float64])
