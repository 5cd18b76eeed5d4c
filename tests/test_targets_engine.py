"""Targets and the autograd engine: values, parsing errors, gradients vs finite differences."""

import pytest
import torch

from pgf.engine.autograd import AutogradEngine
from pgf.engine.registry import get_engine
from pgf.errors import PgfUserError, TargetError
from pgf.models.registry import load_model
from pgf.models.targets import parse_target
from pgf.models.track_ssm import TrackSSM, TrackSSMConfig


@pytest.fixture(scope="module")
def two_channel_model():
    torch.manual_seed(0)
    return TrackSSM(TrackSSMConfig(d_model=8, n_layer=2, d_state=4, channels=("cage", "dnase"))).double().eval()


def onehot(L, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (1, L), generator=g), 4).double()
    x[0, 3] = 0  # an N
    return x


def test_parse_targets(two_channel_model):
    m = two_channel_model
    assert parse_target(None, m).spec == "sum:cage"
    assert parse_target("sum", m).spec == "sum:cage"
    assert parse_target("sum:1", m).spec == "sum:dnase"
    assert parse_target("sum:dnase", m).channel == 1
    target = parse_target("position:1,005:dnase", m)
    assert (target.kind, target.position, target.channel, target.spec) == ("position", 1004, 1, "position:1005:dnase")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("max", "unknown target 'max'"),
        ("loglik", "needs a language model"),
        ("sum:atac", "unknown channel 'atac'"),
        ("sum:2", "unknown channel '2'"),
        ("position:abc", "expected position:P"),
        ("position:0", "expected position:P"),
        ("position:", "expected position:P"),
    ],
)
def test_bad_targets(two_channel_model, spec, message):
    with pytest.raises(TargetError) as info:
        parse_target(spec, two_channel_model)
    assert message in str(info.value)


def test_position_outside_region(two_channel_model):
    target = parse_target("position:100", two_channel_model)
    target.check_region(99, 200, "r")  # inside: no error
    with pytest.raises(TargetError, match="outside region r"):
        target.check_region(100, 200, "r")


def test_target_values(two_channel_model):
    x = onehot(30)
    outputs = two_channel_model(x)
    start = 1000
    f_sum = parse_target("sum:dnase", two_channel_model).contributions(outputs, x, [start]).sum()
    torch.testing.assert_close(f_sum, outputs["track"][0, :, 1].sum())
    f_pos = parse_target("position:1011:cage", two_channel_model).contributions(outputs, x, [start]).sum()
    torch.testing.assert_close(f_pos, outputs["track"][0, 10, 0])


@pytest.mark.parametrize("spec", ["sum", "sum:dnase", "position:1017:cage"])
def test_autograd_gradient_matches_finite_differences(two_channel_model, spec):
    model, x, start = two_channel_model, onehot(25, seed=1), 1000
    target = parse_target(spec, model)
    result = AutogradEngine().gradient(model, x, target.readout([start]))
    assert result.gradient.shape == (1, 25, 4)

    def f(inputs):
        return target.contributions(model(inputs), inputs, [start]).sum()

    torch.testing.assert_close(result.target_value[0], f(x))
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        direction = torch.randn(x.shape, generator=g, dtype=torch.float64)
        eps = 1e-6
        numeric = (f(x + eps * direction) - f(x - eps * direction)) / (2 * eps)
        analytic = (result.gradient * direction).sum()
        torch.testing.assert_close(analytic, numeric, rtol=1e-7, atol=1e-9)


def test_progress_is_reported():
    loaded = load_model("random-test")
    calls = []
    AutogradEngine().gradient(loaded.model, onehot(10).float(), parse_target(None, loaded.model).readout([0]), lambda d, t: calls.append((d, t)))
    assert calls == [(1, 2), (2, 2)]


def test_engine_registry():
    assert get_engine("autograd").name == "autograd"
    engine = get_engine("pgf", tile=128)
    assert engine.name == "pgf" and engine.tile == 128
    with pytest.raises(PgfUserError, match="unknown engine"):
        get_engine("magic")


def test_target_window_restricts_sum(two_channel_model):
    x = onehot(30)
    outputs = two_channel_model(x)
    target = parse_target("sum:dnase", two_channel_model).with_window("chr1", 1005, 1012)
    assert target.spec == "sum:dnase over chr1:1006-1012"
    f = target.contributions(outputs, x, [1000]).sum()
    torch.testing.assert_close(f, outputs["track"][0, 5:12, 1].sum())
    target.check_region(1000, 1030, "r", chrom="chr1")
    with pytest.raises(TargetError, match="does not lie inside region r"):
        target.check_region(1006, 1030, "r", chrom="chr1")
    with pytest.raises(TargetError, match="does not lie inside region r"):
        target.check_region(1000, 1030, "r", chrom="chr2")
    with pytest.raises(TargetError, match="not to position"):
        parse_target("position:1001", two_channel_model).with_window("chr1", 1000, 1001)


def test_cpu_batches_go_in_row_groups_with_each_rows_own_target(two_channel_model, monkeypatch):
    """A batch larger than one CPU sweep step is swept a few rows at a time; every row keeps its
    own target (a position that only some rows' regions contain), and the numbers, the
    tangents and the progress are those of the whole batch at once."""
    import pgf.engine.tiled_engine as tiled

    model, L = two_channel_model, 40
    x = torch.cat([onehot(L, seed) for seed in range(5)])
    starts = [100, 90, 100, 70, 95]  # rows whose regions contain genome position 110, and two that do not
    readout = parse_target("position:111:dnase", model).readout(starts)
    engine = get_engine("pgf", tile=16)
    assert tiled.row_groups(x, 16) == [(0, 5)]
    whole = engine.gradient(model, x, readout)
    directions = torch.randn(3, 5, L, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    whole_tangent = engine.tangent(model, x, directions, readout)
    whole_forward = engine.forward(model, x, readout)

    monkeypatch.setattr(tiled, "CPU_STEP_POSITIONS", 32)  # 2 rows of 16-position tiles per step
    assert tiled.row_groups(x, 16) == [(0, 2), (2, 4), (4, 5)]
    with pytest.raises(TypeError, match="Readout"):  # a plain function could not be cut into rows
        engine.gradient(model, x, lambda o, h, offset: o["track"][..., 0])
    seen = []
    grouped = engine.gradient(model, x, readout, progress=lambda done, total: seen.append((done, total)))
    torch.testing.assert_close(grouped.gradient, whole.gradient, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grouped.target_value, whole.target_value, rtol=1e-12, atol=1e-14)
    assert (grouped.gradient[3].abs().sum(), grouped.gradient[0].abs().sum() > 0) == (0, True)
    assert [d for d, _ in seen] == list(range(1, len(seen) + 1)) and {t for _, t in seen} == {len(seen)}
    for got, want in zip(engine.tangent(model, x, directions, readout), whole_tangent):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(engine.forward(model, x, readout), whole_forward, rtol=1e-12, atol=1e-14)
