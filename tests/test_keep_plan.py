"""Layers recomputed in segments when their inputs do not fit (pgf.engine.keep_plan): the same
gradient as keeping every layer, fewer whole-length tensors alive, and the plan chosen from the
memory budget."""

import pytest
import torch

from helpers import CMAP, liven, onehot
from pgf.engine import adjoint, keep_plan
from pgf.engine.autograd import AutogradEngine
from pgf.engine.keep_plan import KeepPlan, plan_for
from pgf.engine.tiled_engine import TiledEngine
from pgf.models.caduceus import CaduceusLM
from pgf.models.caduceus_config import CaduceusConfig
from pgf.models.hf_mamba import HFMambaConfig, HFMambaLM
from pgf.models.targets import parse_target
from pgf.models.tokens import DnaVocabulary
from pgf.models.track_ssm import TrackSSM, TrackSSMConfig
from test_engine_memory import WholeLengthTensors, stream_width

N_LAYER = 5


def deep(kind: str):
    torch.manual_seed(0)
    if kind == "caduceus-ps":
        model = CaduceusLM(CaduceusConfig(d_model=8, n_layer=N_LAYER, ssm_cfg={"d_state": 4}, rcps=True,
                                          complement_map=CMAP))
    elif kind == "caduceus-ps-mamba2":
        model = CaduceusLM(CaduceusConfig(d_model=16, n_layer=N_LAYER, rcps=True, complement_map=CMAP,
                                          mixer_layer="Mamba2", ssm_cfg={"headdim": 8, "d_state": 4, "ngroups": 2}))
    elif kind == "hf-mamba":
        model = HFMambaLM(HFMambaConfig(vocab_size=12, hidden_size=8, state_size=4, num_hidden_layers=N_LAYER),
                          DnaVocabulary((7, 8, 9, 10), 11))
    elif kind == "track-ew":  # a pointwise (not additive) combine of the two directions
        model = TrackSSM(TrackSSMConfig(d_model=8, n_layer=N_LAYER, d_state=4, bidirectional_strategy="ew_multiply"))
    else:
        raise ValueError(kind)
    return liven(model).eval().double()


KINDS = [("caduceus-ps", "loglik"), ("caduceus-ps-mamba2", "loglik"), ("hf-mamba", "loglik"), ("track-ew", "sum")]


@pytest.mark.parametrize("kind, target", KINDS)
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_every_segment_length_gives_the_gradient_of_keeping_every_layer(kind, target, backend):
    model = deep(kind)
    x = onehot(150, seed=3)
    readout = parse_target(target, model).readout([0])
    kept = TiledEngine(tile=40, backend=backend, segment=N_LAYER).gradient(model, x, readout)
    truth = AutogradEngine(backend).gradient(model, x, readout).gradient
    scale = truth.abs().max()
    assert kept.recomputed_layers == 0
    assert float((kept.gradient - truth).abs().max() / scale) <= 1e-10
    for segment, recomputed in [(1, 4), (2, 3), (3, 2), (4, 1)]:
        got = TiledEngine(tile=40, backend=backend, segment=segment).gradient(model, x, readout)
        assert got.recomputed_layers == recomputed
        # the same tiles, kernels and order: the recomputed layers give the first pass's numbers
        assert float((got.gradient - kept.gradient).abs().max() / scale) <= 1e-14
        assert torch.equal(got.target_value, kept.target_value)


def test_recomputing_lowers_the_whole_length_tensors_alive():
    model, L = deep("caduceus-ps"), 300
    x = onehot(L, seed=2)
    readout = parse_target("loglik", model).readout([0])
    peaks = {}
    for segment in (N_LAYER, 2):
        counter = WholeLengthTensors(L, stream_width(model, x))
        with counter:
            TiledEngine(tile=64, segment=segment).gradient(model, x, readout)
        peaks[segment] = counter.peak
    # all kept: 5 layer inputs + the current layer's working set; segments of 2 layers ([0], [1, 2],
    # [3, 4]): 2 checkpoints (layers 0 and 1) + the 2 inputs of the segment being pulled back
    assert peaks[N_LAYER] >= N_LAYER + 2
    assert peaks[2] <= peaks[N_LAYER] - 1


def test_the_plan_is_chosen_from_the_memory_budget(monkeypatch):
    model = deep("hf-mamba")
    x = onehot(120, seed=1)
    readout = parse_target("loglik", model).readout([0])
    budgets = []

    def budget(device, on_host):
        budgets.append(on_host)
        return 2.5 * 120 * 8 * 8  # two and a half fp64 layer inputs of 120 x 8
    monkeypatch.setattr(adjoint, "memory_budget", budget)
    got = TiledEngine(tile=32).gradient(model, x, readout)
    assert budgets == [False] and got.recomputed_layers > 0
    truth = AutogradEngine().gradient(model, x, readout).gradient
    assert float((got.gradient - truth).abs().max() / truth.abs().max()) <= 1e-10

    monkeypatch.setattr(adjoint, "memory_budget", lambda device, on_host: None)
    assert TiledEngine(tile=32).gradient(model, x, readout).recomputed_layers == 0


@pytest.mark.parametrize("kind", ["caduceus-ps-mamba2", "caduceus-ps"])
def test_full_residuals_are_kept_only_when_every_layers_fit(kind, monkeypatch):
    """The mixers' residuals (Mamba-2 and Mamba-1) keep in_proj's output when every layer's fits
    the budget (once for a scan and its tied twin); else every layer keeps slim residuals (in_proj
    runs again in the reverse pass), and layers are recomputed only when even those do not fit;
    the gradient is autograd's in each case."""
    from pgf.models.mamba import MambaMixer
    from pgf.models.mamba2 import Mamba2Mixer

    model = deep(kind)
    x, tile = onehot(120, seed=4), 32
    readout = parse_target("loglik", model).readout([0])
    truth = AutogradEngine().gradient(model, x, readout).gradient
    per_layer = len(model.tiled_layers()[0].scans) * -(-120 // tile)
    runs = [0]
    # Mamba-2 runs in_proj as a module, Mamba-1 as two products in `_project`
    hooks = [m.in_proj.register_forward_hook(lambda *_: runs.__setitem__(0, runs[0] + 1))
             for m in {id(m.in_proj): m for m in model.modules() if isinstance(m, Mamba2Mixer)}.values()]
    real_project = MambaMixer._project
    monkeypatch.setattr(MambaMixer, "_project", lambda *a: runs.__setitem__(0, runs[0] + 1) or real_project(*a))
    measured = []
    real_bytes_held = adjoint.bytes_held
    monkeypatch.setattr(adjoint, "bytes_held", lambda *a: measured.append(real_bytes_held(*a)) or measured[-1])

    def run(budget: float) -> tuple[int, int]:
        """(layers recomputed, in_proj runs)."""
        monkeypatch.setattr(adjoint, "memory_budget", lambda device, on_host: budget)
        runs[0] = 0
        measured.clear()
        got = TiledEngine(tile=tile).gradient(model, x, readout)
        assert float((got.gradient - truth).abs().max() / truth.abs().max()) <= 1e-10
        return got.recomputed_layers, runs[0]

    def slim_runs(recomputed: int) -> int:
        """The first layer's forward keeps full residuals (the plan is made from it), so computes
        in_proj once per twin pair; every later forward of a layer, and every layer's reverse
        pass, runs it for each scan."""
        return per_layer // 2 + per_layer * (N_LAYER - 1 + recomputed) + per_layer * N_LAYER

    try:
        assert run(1e15) == (0, N_LAYER * per_layer // 2)
        slim, full = measured[:2]  # one layer's footprint with slim, then full residuals
        assert slim < full
        assert run(N_LAYER * full) == (0, N_LAYER * per_layer // 2)
        assert run(N_LAYER * full - 1) == (0, slim_runs(0))
        assert run(N_LAYER * slim) == (0, slim_runs(0))
        recomputed, total = run(N_LAYER * slim - 1)
        assert recomputed > 0 and total == slim_runs(recomputed)
    finally:
        for hook in hooks:
            hook.remove()


def test_plans():
    assert plan_for(24, 10, 12, None).keeps_all
    assert plan_for(24, 10, 12, 24 * 12).keeps_all
    plan = plan_for(24, 10, 12, 100)
    assert not plan.keeps_all
    peak = (-(-24 // plan.segment) - 1) * 10 + plan.segment * 12
    assert peak <= 100 and (-(-24 // (plan.segment + 1)) - 1) * 10 + (plan.segment + 1) * 12 > 100
    assert [list(s) for s in KeepPlan(5, 2).segments()] == [[0], [1, 2], [3, 4]]
    assert [i for i in range(5) if KeepPlan(5, 2).checkpoint(i)] == [0, 1, 3, 4]
    assert [list(s) for s in KeepPlan(6, 3).segments()] == [[0, 1, 2], [3, 4, 5]]
    assert [list(s) for s in KeepPlan(4, 9).segments()] == [[0, 1, 2, 3]] and KeepPlan(4, 9).keeps_all
    assert KeepPlan(5, 2).recomputed_layers == 3 and KeepPlan(6, 3).recomputed_layers == 3
    assert KeepPlan(24, 14).recomputed_layers == 10
    assert plan_for(24, 10, 12, 1).segment >= 1  # nothing fits: the smallest footprint, not an error
    assert plan_for(1, 10, 12, 1).keeps_all and plan_for(0, 10, 12, 1).keeps_all


def test_host_memory_is_read():
    available = keep_plan.host_memory_available()
    assert available is None or available > 0


def test_a_model_without_layers():
    model = TrackSSM(TrackSSMConfig(d_model=8, n_layer=0, d_state=4)).double().eval()
    x = onehot(40)
    readout = parse_target("sum", model).readout([0])
    got = TiledEngine(tile=16).gradient(model, x, readout)
    truth = AutogradEngine().gradient(model, x, readout).gradient
    assert got.recomputed_layers == 0 and torch.allclose(got.gradient, truth, rtol=1e-12, atol=1e-12)
