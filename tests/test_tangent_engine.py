"""The PGF tangent engine equals torch.func.jvp of the whole-sequence model; the forward sweep equals forward."""

import pytest
import torch
from torch.func import jvp

from helpers import MODEL_KINDS, build, onehot
from pgf.engine.tiled_engine import TiledEngine
from pgf.workflows.effect import output_function


def reference_jvp(model, x, direction, output):
    return jvp(lambda z: output(model(z), x, 0), (x,), (direction,))


def directions(k, L, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, 1, L, 4, generator=g, dtype=dtype)


def relative(a, b):
    return float(((a - b).abs().max() / b.abs().max().clamp(min=1e-30)).detach())


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("L, tile", [(1, 1), (63, 16), (300, 64), (300, 300)])
def test_tangent_equals_jvp_fp64(kind, L, tile):
    model = build(kind).double()
    output, _, _ = output_function(model)
    x, V = onehot(L), directions(2, L, torch.float64)
    primal, tangent = TiledEngine(tile=tile).tangent(model, x, V, output)
    for i in range(2):
        expected_primal, expected_tangent = reference_jvp(model, x, V[i], output)
        assert relative(primal, expected_primal) <= 1e-10
        if expected_tangent.abs().max() > 0:
            assert relative(tangent[i], expected_tangent) <= 1e-10


@pytest.mark.parametrize("kind", ["track-bi", "caduceus-ps", "hf-mamba"])
def test_tangent_fp32(kind):
    """In float32 the tiled tangent (compiled kernels) is as accurate as whole-sequence jvp
    (reference kernels): both measured against the float64 result."""
    x, V = onehot(500, dtype=torch.float64), directions(1, 500, torch.float64)
    model64 = build(kind).double()
    output64, _, _ = output_function(model64)
    _, truth = reference_jvp(model64, x, V[0], output64)
    model = build(kind).float()
    output, _, _ = output_function(model)
    _, tangent = TiledEngine(tile=64).tangent(model, x.float(), V.float(), output)
    _, whole = reference_jvp(model, x.float(), V[0].float(), output)
    error, whole_error = relative(tangent[0].double(), truth), relative(whole.double(), truth)
    assert error <= 2 * whole_error + 1e-6 and error <= 1e-3, (error, whole_error)


def test_batched_tangents_equal_one_at_a_time():
    model = build("caduceus-ps").double()
    output, _, _ = output_function(model)
    x, V = onehot(120), directions(5, 120, torch.float64, seed=3)
    engine = TiledEngine(tile=32)
    _, together = engine.tangent(model, x, V, output)
    for i in range(5):
        _, alone = engine.tangent(model, x, V[i : i + 1], output)
        torch.testing.assert_close(together[i], alone[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["track-ew", "caduceus-ps-unfused", "hf-mamba"])
def test_forward_sweep_equals_forward(kind):
    model = build(kind).double()
    output, _, _ = output_function(model)
    x = onehot(200, batch=2)
    with torch.no_grad():
        expected = output(model(x), x, 0)
    torch.testing.assert_close(TiledEngine(tile=37).forward(model, x, output), expected, rtol=1e-12, atol=1e-12)


def test_linear_approaches_exact_as_the_perturbation_shrinks():
    model = build("track-bi").double()
    output, _, _ = output_function(model)
    L = 150
    x = onehot(L)
    v = torch.zeros(1, 1, L, 4, dtype=torch.float64)
    v[0, 0, 90, 1], v[0, 0, 90, int(x[0, 90].argmax())] = 1.0, -1.0  # a SNV direction
    _, linear = TiledEngine(tile=40).tangent(model, x, v, output)
    errors = []
    for eps in (1e-1, 1e-2, 1e-3):
        exact = (TiledEngine(40).forward(model, x + eps * v[0], output) - TiledEngine(40).forward(model, x, output)) / eps
        errors.append(relative(exact, linear[0]))
    # the remainder of a first-order expansion shrinks in proportion to the step
    assert errors[1] < 0.2 * errors[0] and errors[2] < 0.2 * errors[1]
