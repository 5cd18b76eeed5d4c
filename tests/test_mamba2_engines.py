"""The tiled engine's gradient (adjoint) and tangent equal plain autograd / jvp on Mamba-2 models, at
fp64, with lengths and tiles that divide neither each other nor the SSD scan's chunk (64)."""

import pytest
import torch
from torch.func import jvp

import pgf
from helpers import native_mamba2_checkpoint, onehot
from pgf.engine.autograd import AutogradEngine
from pgf.engine.protocol import is_causal
from pgf.engine.tiled_engine import TiledEngine
from pgf.models.registry import load_model
from pgf.models.targets import parse_target
from pgf.workflows.effect import output_function


@pytest.fixture(scope="module")
def bidirectional():
    return load_model("random-test-mamba2", dtype=torch.float64).model


@pytest.fixture(scope="module")
def causal(tmp_path_factory):
    """A mamba_ssm LM with Mamba-2 layers and GatedMLPs (the MLP folded into the next layer's maps)."""
    directory, _, _ = native_mamba2_checkpoint(tmp_path_factory.mktemp("native"), d_intermediate=40)
    return load_model(str(directory), dtype=torch.float64).model


def relative(got, expected):
    return float((got - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("target, tile", [("loglik", 37), ("position:5100:T", 97), ("sum:G", 37), ("loglik", 97)])
def test_random_test_mamba2_gradient_fp64(bidirectional, target, tile):
    x = onehot(163)
    readout = parse_target(target, bidirectional).readout([5000])
    expected = AutogradEngine().gradient(bidirectional, x, readout)
    got = TiledEngine(tile=tile).gradient(bidirectional, x, readout)
    assert expected.gradient.abs().max() > 0
    assert relative(got.gradient, expected.gradient) <= 1e-10
    assert relative(got.target_value, expected.target_value) <= 1e-10


def _in_proj_calls(model, run) -> int:
    """How many times `run()` calls an in_proj (the tied directions share one module)."""
    calls = []
    modules = {id(m): m for name, m in model.named_modules() if name.endswith("in_proj")}
    handles = [m.register_forward_hook(lambda *_: calls.append(1)) for m in modules.values()]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return len(calls)


def test_tied_directions_compute_keep_and_pull_back_in_proj_once(bidirectional, monkeypatch):
    """A weight-tied BiMamba's second direction is its first's `twin` (same input, same in_proj):
    the adjoint's forward pass computes and keeps in_proj's output once per tile for both (the
    reverse pass reads it back), the reverse pass pulls both directions' cotangents back through
    in_proj in one product per tile, and the gradient is the one computed without twins."""
    from pgf.models.mamba2 import Mamba2Mixer

    pullbacks = []
    real = Mamba2Mixer._in_proj_vjp
    monkeypatch.setattr(Mamba2Mixer, "_in_proj_vjp", lambda *a: pullbacks.append(1) or real(*a))
    layers = bidirectional.tiled_layers()
    assert [scan.twin for scan in layers[0].scans] == [None, 0, None, 2]
    x = onehot(163, seed=4)
    readout = parse_target("loglik", bidirectional).readout([0])
    engine = TiledEngine(tile=37)  # 5 tiles
    results = {}
    twinned = _in_proj_calls(bidirectional, lambda: results.setdefault("twins", engine.gradient(bidirectional, x, readout)))
    twinned_pullbacks = len(pullbacks)
    bimambas = [m for m in bidirectional.modules() if type(m).__name__ == "BiMambaMixer"]
    try:
        for m in bimambas:
            m.weight_tie = False  # the weights stay tied; only the scans stop naming twins
        assert all(scan.twin is None for scan in bidirectional.tiled_layers()[0].scans)
        alone = _in_proj_calls(bidirectional, lambda: results.setdefault("alone", engine.gradient(bidirectional, x, readout)))
    finally:
        for m in bimambas:
            m.weight_tie = True
    assert (twinned, alone) == (len(layers) * 2 * 5, len(layers) * 4 * 5)
    assert (twinned_pullbacks, len(pullbacks) - twinned_pullbacks) == (len(layers) * 2 * 5, len(layers) * 4 * 5)
    assert relative(results["twins"].gradient, results["alone"].gradient) <= 1e-12
    expected = AutogradEngine().gradient(bidirectional, x, readout)
    assert relative(results["twins"].gradient, expected.gradient) <= 1e-10


def test_api_gradients_engines_agree(bidirectional):
    x = onehot(90, seed=3)
    reference = pgf.gradients(bidirectional, x, engine="autograd")
    tiled = pgf.gradients(bidirectional, x, engine="pgf", tile=41)
    assert relative(tiled.gradient, reference.gradient) <= 1e-10


def test_causal_lm_with_gated_mlp_gradient_fp64(causal):
    assert is_causal(causal.tiled_layers())
    x = onehot(163, seed=1)
    readout = parse_target("loglik", causal).readout([0])
    expected = AutogradEngine().gradient(causal, x, readout)
    got = TiledEngine(tile=37).gradient(causal, x, readout)
    assert relative(got.gradient, expected.gradient) <= 1e-10
    assert relative(got.target_value, expected.target_value) <= 1e-10


@pytest.mark.parametrize("which", ["bidirectional", "causal"])
def test_tangent_equals_jvp_fp64(which, request):
    model = request.getfixturevalue(which)
    output, _, _ = output_function(model)
    L = 71
    x = onehot(L, seed=2)
    direction = torch.randn(1, 1, L, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    primal, tangent = TiledEngine(tile=23).tangent(model, x, direction, output)
    expected_primal, expected_tangent = jvp(lambda z: output(model(z), x, 0), (x,), (direction[0],))
    assert relative(primal, expected_primal.detach()) <= 1e-10
    assert relative(tangent[0], expected_tangent.detach()) <= 1e-10


@pytest.mark.slow
def test_triton_kernels_give_the_same_gradient():
    """The SSD Triton kernels inside the tiled engine (interpreted on CPU, ~15 s; compiled on CUDA)."""
    pytest.importorskip("triton")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model("random-test-mamba2").model
    x = onehot(40, dtype=torch.float32)
    readout = parse_target("loglik", model).readout([0])
    expected = AutogradEngine("cpu").gradient(model, x, readout).gradient
    got = TiledEngine(tile=17, backend="triton").gradient(model.to(device), x.to(device), readout).gradient
    assert relative(got.cpu(), expected) <= 1e-5


@pytest.mark.parametrize("segment", [None, 1], ids=["memory-allows", "segments"])
def test_the_adjoint_pulls_back_through_the_mixers_vjp_without_rerunning_the_projections(bidirectional, segment,
                                                                                      monkeypatch):
    """Each Mamba-2 tile is pulled back by `Mamba2Mixer.tile_vjp`: out_proj runs once per tile and
    scan (in the forward pass), its pull-back is one matmul; in_proj too when every layer's output
    of it is kept (and then once for a scan and its tied twin), else (slim residuals, with
    recompute segments) in_proj runs again in the reverse pass; the gradient is autograd's either way."""
    from pgf.models.mamba2 import Mamba2Mixer

    calls = {"in_proj": 0, "out_proj": 0, "tile_vjp": 0}
    mixers = [m for m in bidirectional.modules() if isinstance(m, Mamba2Mixer)]
    hooks = []
    for name in ("in_proj", "out_proj"):
        projections = {id(getattr(m, name)): getattr(m, name) for m in mixers}.values()  # tied: one hook each
        hooks += [p.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
                  for p in projections]
    real = Mamba2Mixer.tile_vjp
    monkeypatch.setattr(Mamba2Mixer, "tile_vjp",
                        lambda *a, **k: calls.__setitem__("tile_vjp", calls["tile_vjp"] + 1) or real(*a, **k))
    x, L, tile = onehot(163), 163, 37
    readout = parse_target("loglik", bidirectional).readout([0])
    try:
        result = TiledEngine(tile=tile, segment=segment).gradient(bidirectional, x, readout)
    finally:
        for hook in hooks:
            hook.remove()
    layers = bidirectional.tiled_layers()
    per_layer = len(layers[0].scans) * -(-L // tile)
    visits = per_layer * len(layers)
    forward_runs = visits + per_layer * result.recomputed_layers
    in_proj_runs = forward_runs // 2 if segment is None else forward_runs + visits
    assert (segment is None) == (result.recomputed_layers == 0)
    assert calls == {"in_proj": in_proj_runs, "out_proj": forward_runs, "tile_vjp": visits}
    assert relative(result.gradient, AutogradEngine().gradient(bidirectional, x, readout).gradient) <= 1e-10
