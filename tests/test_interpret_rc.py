"""Reverse-complement averaging: redundant on RC-equivariant (ps) models, the strand mean elsewhere."""

import numpy as np
import torch

from pgf.engine import get_engine
from pgf.interpret import integrated_gradients, mirrored_starts, rc_gradient, reverse_complement, saturation_mutagenesis
from pgf.models.targets import parse_target

from helpers import build, onehot


def autograd_gradient(model, x, target, start=0):
    z = x.detach().clone().requires_grad_(True)
    value = target.contributions(model(z), x, [start]).sum()
    return torch.autograd.grad(value, z)[0]


def test_reverse_complement_columns():
    x = torch.nn.functional.one_hot(torch.tensor([[0, 1, 2, 3, 3]]), 4)  # ACGTT
    assert reverse_complement(x).argmax(-1).tolist() == [[0, 0, 1, 2, 3]]  # AACGT


def test_ps_model_rc_average_changes_nothing():
    model = build("caduceus-ps").double()
    target = parse_target("loglik", model).with_window("chr", 110, 130)
    x, starts = onehot(40, seed=2), [100]
    engine = get_engine("pgf", tile=16)
    plain = engine.gradient(model, x, target.readout(starts))
    averaged = rc_gradient(engine, model, x, target, starts)
    scale = plain.gradient.abs().max()
    assert (averaged.gradient - plain.gradient).abs().max() <= 1e-5 * scale
    assert torch.allclose(averaged.target_value, plain.target_value, rtol=1e-10)
    ig = integrated_gradients(engine, model, x, target, starts, baseline="shuffle", steps=4, seed=1)
    ig_rc = integrated_gradients(engine, model, x, target, starts, baseline="shuffle", steps=4, seed=1, rc_average=True)
    assert (ig_rc.attributions - ig.attributions).abs().max() <= 1e-5 * ig.attributions.abs().max()
    ism = saturation_mutagenesis(engine, model, x, target, starts, window=(8, 16), compare_taylor=False)
    ism_rc = saturation_mutagenesis(engine, model, x, target, starts, window=(8, 16), rc_average=True, compare_taylor=False)
    finite = ~ism.ism.isnan()
    assert torch.equal(finite, ~ism_rc.ism.isnan())
    assert (ism_rc.ism[finite] - ism.ism[finite]).abs().max() <= 1e-5 * ism.ism[finite].abs().max()


def test_ph_model_rc_average_is_the_mean_of_both_strands():
    model = build("caduceus-ph").double()
    L, start, (w0, w1) = 40, 100, (110, 130)
    target = parse_target("loglik", model)
    x = onehot(L, seed=2)
    averaged = rc_gradient(get_engine("pgf", tile=16), model, x, target.with_window("chr", w0, w1), [start])
    # by hand: window [10, 30) of the region is [L-30, L-10) of the reverse strand
    forward = autograd_gradient(model, x, target.with_window("chr", w0, w1), start)
    rc = x.flip(1)[..., [3, 2, 1, 0]]
    backward = autograd_gradient(model, rc, target.with_window("chr", start + L - 30, start + L - 10), start)
    by_hand = 0.5 * (forward + backward.flip(1)[..., [3, 2, 1, 0]])
    assert (averaged.gradient - by_hand).abs().max() <= 1e-10 * by_hand.abs().max()
    assert (averaged.gradient - forward).abs().max() > 1e-3 * forward.abs().max()  # ph is not RC-equivariant


def test_mirrored_position_target():
    model = build("track-bi").double()
    target = parse_target("position:105:a", model)  # 0-based genome 104 = region index 4
    L, start = 20, 100
    starts = mirrored_starts(target, [start], L)
    x = onehot(L, seed=4)
    mirrored = autograd_gradient(model, reverse_complement(x), target, starts[0])
    by_hand = autograd_gradient(model, reverse_complement(x), parse_target(f"position:{start + L - 1 - 4 + 1}:a", model), start)
    assert torch.allclose(mirrored, by_hand)
    assert np.isclose(float(by_hand.abs().sum()), float(mirrored.abs().sum())) and by_hand.abs().sum() > 0
