"""Integrated and expected gradients against plain autograd quadratures; completeness; seeds."""

import numpy as np
import pytest
import torch

from pgf.engine import get_engine
from pgf.interpret.paths import draw_baselines, expected_gradients, integrated_gradients
from pgf.models.registry import load_model
from pgf.models.targets import parse_target

from helpers import build, onehot


def f_and_grad(model, z, selection, target, start):
    z = z.detach().clone().requires_grad_(True)
    value = target.contributions(model(z), selection, [start]).sum()
    (grad,) = torch.autograd.grad(value, z)
    return float(value.detach()), grad


def autograd_ig(model, x, target, starts, baselines, steps):
    """Independent IG: Gauss-Legendre nodes from numpy, whole-sequence autograd per point."""
    t, w = np.polynomial.legendre.leggauss(steps)
    alphas, weights = (t + 1) / 2, w / 2
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        for k in range(baselines.shape[1]):
            base = baselines[i : i + 1, k]
            for a, wt in zip(alphas, weights):
                _, g = f_and_grad(model, base + a * (x[i : i + 1] - base), x[i : i + 1], target, starts[i])
                out[i] += wt / baselines.shape[1] * ((x[i : i + 1] - base) * g)[0]
    return out


@pytest.mark.parametrize("kind,target_spec,window", [
    ("track-bi", "sum:b", (5, 20)), ("caduceus-ph", "loglik", (3, 30)), ("hf-mamba", "loglik", None), ("track-causal", "position:18", None),
])
def test_ig_equals_autograd_quadrature(kind, target_spec, window):
    model = build(kind).double()
    target = parse_target(target_spec, model)
    if window:
        target = target.with_window("chr", *window)
    x = onehot(32, seed=2, batch=2)
    starts = [0, 0]
    baselines = draw_baselines(x, "shuffle", 2, np.random.default_rng(1))
    result = integrated_gradients(get_engine("pgf", tile=8), model, x, target, starts, baseline=baselines, steps=6, batch_rows=5)
    expected = autograd_ig(model, x, target, starts, baselines, 6)
    assert torch.allclose(result.attributions, expected, rtol=1e-10, atol=1e-12 * expected.abs().max())
    fx = [f_and_grad(model, x[i : i + 1], x[i : i + 1], target, 0)[0] for i in range(2)]
    assert torch.allclose(result.target_value, torch.tensor(fx, dtype=torch.float64), rtol=1e-12)


def test_ig_completeness_random_caduceus():
    model = build("caduceus-ps").double()
    target = parse_target("loglik", model)
    x = onehot(48, seed=3)
    result = integrated_gradients(get_engine("pgf", tile=16), model, x, target, [0], baseline="shuffle", n_baselines=2, steps=24, seed=0)
    assert float(result.completeness_error[0]) < 0.01
    coarse = integrated_gradients(get_engine("pgf", tile=16), model, x, target, [0], baseline="shuffle", n_baselines=2, steps=2, seed=0)
    assert float(coarse.completeness_error[0]) > float(result.completeness_error[0])
    assert result.baseline_target_value.shape == (1,) and torch.isfinite(result.baseline_target_value).all()


@pytest.mark.slow
def test_ig_completeness_builtin_model():
    loaded = load_model("builtin")
    target = parse_target("sum:expression", loaded.model)
    x = onehot(120, seed=4, dtype=torch.float32)
    for baseline in ("zeros", "uniform"):
        result = integrated_gradients(get_engine("pgf", tile=64), loaded.model, x, target, [0], baseline=baseline, steps=20)
        assert float(result.completeness_error[0]) < 0.01, baseline


def test_midpoint_rule_and_row_chunks_agree():
    model = build("track-bi").double()
    target = parse_target("sum", model)
    x = onehot(24, seed=5)
    engine = get_engine("pgf", tile=8)
    one = integrated_gradients(engine, model, x, target, [0], baseline="uniform", steps=16, rule="midpoint", batch_rows=3)
    many = integrated_gradients(engine, model, x, target, [0], baseline="uniform", steps=16, rule="midpoint", batch_rows=64)
    assert torch.allclose(one.attributions, many.attributions, rtol=1e-12, atol=1e-14)
    gauss = integrated_gradients(engine, model, x, target, [0], baseline="uniform", steps=8)
    assert float(gauss.completeness_error[0]) < 1e-6
    assert float(gauss.completeness_error[0]) < float(one.completeness_error[0])
    assert torch.allclose(one.attributions, gauss.attributions, atol=1e-2 * gauss.attributions.abs().max())


def test_baselines():
    x = onehot(20, seed=6)
    assert draw_baselines(x, "zeros", 2, np.random.default_rng(0)).abs().sum() == 0
    uniform = draw_baselines(x, "uniform", 1, np.random.default_rng(0))[0, 0]
    assert torch.all(uniform[7] == 0) and torch.all(uniform[0] == 0.25)  # position 7 is an N
    with pytest.raises(ValueError):
        draw_baselines(x, "random", 1, np.random.default_rng(0))


def test_expected_gradients_seeded():
    model = build("caduceus-ph").double()
    target = parse_target("loglik", model)
    x = onehot(32, seed=7)
    engine = get_engine("pgf", tile=8)
    a = expected_gradients(engine, model, x, target, [0], samples=6, seed=3)
    b = expected_gradients(engine, model, x, target, [0], samples=6, seed=3, batch_rows=2)
    c = expected_gradients(engine, model, x, target, [0], samples=6, seed=4)
    assert torch.allclose(a.attributions, b.attributions, rtol=1e-12, atol=1e-15)
    assert not torch.allclose(a.attributions, c.attributions)
    # independently: the same draws (shuffles first, then the alphas) through plain autograd
    rng = np.random.default_rng(3)
    baselines = draw_baselines(x, "shuffle", 6, rng)
    alphas = rng.random((1, 6))
    expected = torch.zeros_like(x)
    for s in range(6):
        base = baselines[:, s]
        _, g = f_and_grad(model, base + alphas[0, s] * (x - base), x, target, 0)
        expected += (x - base) * g / 6
    assert (a.attributions - expected).abs().max() <= 1e-10 * expected.abs().max(), (a.attributions - expected).abs().max()
