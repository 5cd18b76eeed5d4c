"""The PGF adjoint engine equals plain autograd for every model kind, target, length and tile."""

import pytest
import torch

from helpers import build, onehot
from pgf.engine.autograd import AutogradEngine
from pgf.engine.tiled_engine import TiledEngine
from pgf.models.targets import parse_target


def compare(model, target_spec, L, tile, dtype=torch.float64, start=5000, batch=1, window=None, backend=None):
    model = model.to(dtype)
    x = onehot(L, dtype=dtype, batch=batch)
    target = parse_target(target_spec, model)
    if window:
        target = target.with_window("chr1", start + window[0], start + window[1])
    starts = [start] * batch
    expected = AutogradEngine(backend).gradient(model, x, target.readout(starts))
    got = TiledEngine(tile=tile, backend=backend).gradient(model, x, target.readout(starts))
    scale = expected.gradient.abs().max()
    assert scale > 0
    gradient_error = float((got.gradient - expected.gradient).abs().max() / scale)
    value_error = float((got.target_value - expected.target_value).abs().max() / expected.target_value.abs().max().clamp(min=1e-30))
    return gradient_error, value_error


# every length with every tile, except one-position tiles over 1,000 positions (1,000 tiles of
# Python per layer: minutes, and no tile edge that 63 one-position tiles do not already cross)
LENGTHS_AND_TILES = [(L, tile) for L in (1, 63, 1000) for tile in (1, 16, 64, 1000) if (L, tile) != (1000, 1)] + [(1000, 7)]


@pytest.mark.parametrize("L, tile", LENGTHS_AND_TILES)
def test_track_model_all_lengths_and_tiles_fp64(L, tile):
    gradient_error, value_error = compare(build("track-bi"), "sum:b", L, tile)
    assert gradient_error <= 1e-10 and value_error <= 1e-10


KINDS_AND_TARGETS = [
    ("track-bi", "position:5031:a"),
    ("track-causal", "sum"),
    ("track-causal", "position:5040"),
    ("track-ew", "sum"),
    ("hf-mamba", "loglik"),
    ("hf-mamba", "sum:G"),
    ("caduceus-ph", "loglik"),
    ("caduceus-ps", "loglik"),
    ("caduceus-ps", "position:5020:T"),
    ("caduceus-ps-unfused", "loglik"),
]


@pytest.mark.parametrize("kind, target", KINDS_AND_TARGETS)
@pytest.mark.parametrize("L, tile", [(63, 16), (63, 64), (1000, 64)])
def test_every_model_kind_fp64(kind, target, L, tile):
    if target.startswith("position") and L < 63:
        pytest.skip("position outside the region")
    gradient_error, value_error = compare(build(kind), target, L, tile)
    assert gradient_error <= 1e-10 and value_error <= 1e-10


@pytest.mark.parametrize("kind, target", [("track-bi", "sum"), ("hf-mamba", "loglik"), ("caduceus-ps", "loglik")])
def test_fp32(kind, target):
    gradient_error, value_error = compare(build(kind), target, 1000, 64, dtype=torch.float32)
    assert gradient_error <= 1e-5 and value_error <= 1e-5


@pytest.mark.parametrize("kind, target", [("hf-mamba", "loglik"), ("caduceus-ps", "loglik"), ("track-bi", "sum")])
def test_windows_and_batches(kind, target):
    gradient_error, value_error = compare(build(kind), target, 200, 32, window=(50, 120), batch=2)
    assert gradient_error <= 1e-10 and value_error <= 1e-10


def test_length_one_tile_one_for_language_models():
    for kind in ("hf-mamba", "caduceus-ps"):
        gradient_error, _ = compare(build(kind), "sum:A", 1, 1)
        assert gradient_error <= 1e-10


def test_progress_counts_to_total_and_parameters_stay_trainable():
    model = build("caduceus-ps").double()
    calls = []
    TiledEngine(tile=16).gradient(model, onehot(40), parse_target(None, model).readout([0]), lambda d, t: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] and len(calls) == calls[-1][1]
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("kind, target", [("track-bi", "sum"), ("caduceus-ps", "loglik"), ("hf-mamba", "loglik")])
def test_compiled_kernels_pull_back_without_rerunning_the_scans(kind, target, monkeypatch):
    """With the compiled CPU kernels the forward pass keeps each scan tile's chunk states (a residual)
    and the reverse pass uses the mixer's own VJP: the scan's forward kernel runs once per tile and
    scan, in the forward pass only, and the gradient still equals autograd's. With the reference
    kernels (no residual) every tile is recomputed."""
    from pgf_kernels.scan import cpu as scan_cpu

    model = build(kind).double()
    L, tile = 200, 64
    counts = []
    real = scan_cpu.scan_forward
    monkeypatch.setattr(scan_cpu, "scan_forward", lambda *a, **k: counts.append(1) or real(*a, **k))
    error, _ = compare(model, target, L, tile, backend="auto")
    counts.clear()
    TiledEngine(tile=tile, backend="auto").gradient(model, onehot(L, dtype=torch.float64), parse_target(target, model).readout([0]))
    n_scans = sum(len(layer.scans) for layer in model.tiled_layers())
    assert len(counts) == n_scans * -(-L // tile)
    assert error < 1e-10


def test_triton_kernels_pull_back_without_rerunning_the_scans(monkeypatch):
    """As with the CPU kernels, the Triton scan keeps its chunk states in the forward pass and the
    reverse pass runs its adjoint kernel from them (on a GPU too: residuals are kept on every
    device): the forward kernel runs once per tile and scan, and the gradient equals autograd's."""
    from pgf_kernels.scan import triton as scan_triton

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build("caduceus-ps").double()
    L, tile = 70, 32
    counts = []
    real = scan_triton.scan_forward
    monkeypatch.setattr(scan_triton, "scan_forward", lambda *a, **k: counts.append(1) or real(*a, **k))
    x, readout = onehot(L, dtype=torch.float64), parse_target("loglik", model).readout([0])
    got = TiledEngine(tile=tile, backend="triton").gradient(model.to(device), x.to(device), readout).gradient.cpu()
    model.cpu()
    n_scans = sum(len(layer.scans) for layer in model.tiled_layers())
    assert len(counts) == n_scans * -(-L // tile)
    truth = AutogradEngine("reference").gradient(model, x, readout).gradient
    assert float((got - truth).abs().max() / truth.abs().max()) < 1e-10


@pytest.mark.parametrize("kind, twins", [("caduceus-ps", [None, 0, None, 2]), ("track-bi", [None, 0])])
def test_tied_mamba1_directions_compute_keep_and_pull_back_in_proj_once(kind, twins, monkeypatch):
    """A weight-tied Mamba-1 BiMamba's reverse scan is its forward scan's `twin`: with the compiled
    kernels (residuals kept) the adjoint computes in_proj's output once per tile and pair in its
    forward pass and never in its reverse pass, and pulls the pair back through in_proj in one
    product per tile; the gradient is the one computed without twins, and autograd's."""
    from pgf.models.mamba import MambaMixer

    model = build(kind).double()
    assert [scan.twin for scan in model.tiled_layers()[0].scans] == twins
    projections, pullbacks = [], []
    real_project, real_vjp = MambaMixer._project, MambaMixer._in_proj_vjp
    monkeypatch.setattr(MambaMixer, "_project", lambda *a: projections.append(1) or real_project(*a))
    monkeypatch.setattr(MambaMixer, "_in_proj_vjp", lambda *a: pullbacks.append(1) or real_vjp(*a))
    x, readout = onehot(150, dtype=torch.float64), parse_target("sum", model).readout([0])
    engine = TiledEngine(tile=32, backend="cpu")  # 5 tiles
    n_layers, n_scans = len(model.tiled_layers()), len(twins)

    def counted(run) -> tuple[torch.Tensor, int, int]:
        projections.clear()
        pullbacks.clear()
        return run().gradient, len(projections), len(pullbacks)

    twinned = counted(lambda: engine.gradient(model, x, readout))
    bimambas = [m for m in model.modules() if type(m).__name__ == "BiMambaMixer"]
    try:
        for m in bimambas:
            m.weight_tie = False  # the weights stay tied; only the scans stop naming twins
        alone = counted(lambda: engine.gradient(model, x, readout))
    finally:
        for m in bimambas:
            m.weight_tie = True
    assert twinned[1:] == (n_layers * n_scans // 2 * 5, n_layers * n_scans // 2 * 5)
    assert alone[1:] == (n_layers * n_scans * 5, n_layers * n_scans * 5)
    assert float((twinned[0] - alone[0]).abs().max() / alone[0].abs().max()) <= 1e-12
    truth = AutogradEngine("reference").gradient(model, x, readout).gradient
    assert float((twinned[0] - truth).abs().max() / truth.abs().max()) <= 1e-10
