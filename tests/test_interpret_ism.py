"""Exact ISM: every (position, alternative) equals f(mutant) − f(reference) computed independently."""

import numpy as np
import pytest
import torch

from pgf.engine import get_engine
from pgf.interpret.ism import saturation_mutagenesis, taylor_ism_correlation
from pgf.models.targets import parse_target

from helpers import build, onehot


def f(model, z, selection, target, start=0):
    with torch.no_grad():
        return float(target.contributions(model(z), selection, [start]).sum())


@pytest.mark.parametrize("kind,target_spec,window", [
    ("track-causal", "sum", (6, 20)), ("caduceus-ph", "loglik", (4, 28)), ("hf-mamba", "loglik", None), ("track-bi", "position:12:b", None),
])
def test_ism_equals_forward_differences(kind, target_spec, window):
    model = build(kind).double()
    target = parse_target(target_spec, model)
    if window:
        target = target.with_window("chr", *window)
    x = onehot(24, seed=3)
    result = saturation_mutagenesis(get_engine("pgf", tile=8), model, x, target, [0], window=(5, 14), batch_rows=7)
    reference = f(model, x, x, target)
    assert float(result.target_value[0]) == pytest.approx(reference, rel=1e-12)
    ism = result.ism[0]
    for position in range(24):
        for base in range(4):
            value = float(ism[position, base])
            if not 5 <= position < 14 or x[0, position].sum() == 0:
                assert np.isnan(value)
            elif x[0, position, base] == 1:
                assert value == 0.0
            else:
                mutant = x.clone()
                mutant[0, position] = 0.0
                mutant[0, position, base] = 1.0
                expected = f(model, mutant, x, target) - reference
                assert value == pytest.approx(expected, rel=1e-9, abs=1e-12 * abs(reference))
    hypothetical = result.hypothetical[0, 5:14]
    finite = ~hypothetical.isnan().any(-1)
    assert torch.allclose(hypothetical[finite].sum(-1), torch.zeros(int(finite.sum()), dtype=torch.float64), atol=1e-12)
    score = result.score[0]
    assert torch.isnan(score[:5]).all() and torch.isnan(score[7])  # outside the window; position 7 is an N
    expected_score = -ism[5:14].nansum(-1) / 4
    assert torch.allclose(score[5:14][finite], expected_score[finite])
    assert np.isfinite(float(result.taylor_correlation[0]))
    print(f"{kind}: Taylor-ISM vs ISM Pearson r = {float(result.taylor_correlation[0]):.3f}")


def test_ism_window_limit():
    model = build("track-bi").double()
    target = parse_target("sum", model)
    x = onehot(30, seed=1)
    with pytest.raises(ValueError, match="limit"):
        saturation_mutagenesis(get_engine("pgf"), model, x, target, [0], max_positions=10)
    result = saturation_mutagenesis(get_engine("pgf"), model, x, target, [0], max_positions=10, force=True, compare_taylor=False)
    assert result.window == (0, 30) and result.taylor_correlation is None
    with pytest.raises(ValueError, match="inside"):
        saturation_mutagenesis(get_engine("pgf"), model, x, target, [0], window=(25, 31))


def test_taylor_correlation_definition():
    x = torch.nn.functional.one_hot(torch.tensor([[0, 1, 2]]), 4).double()
    gradient = torch.randn(1, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = gradient - (gradient * x).sum(-1, keepdim=True)  # a model linear in x: Taylor ISM is exact
    assert float(taylor_ism_correlation(gradient, x, exact)[0]) == pytest.approx(1.0)
