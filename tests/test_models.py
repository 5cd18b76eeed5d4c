"""Mamba blocks, the pgf-track-ssm model, checkpoints and their error paths."""

import json

import pytest
import safetensors.torch
import torch

from pgf.errors import ModelError
from pgf.models.checksum import state_checksum
from pgf.models.mamba import BiMambaMixer, MambaMixer
from pgf.models.registry import (
    build_random_test_model,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from pgf.models.track_ssm import TrackSSM, TrackSSMConfig
from mixers import bimamba


def random_onehot(L, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(0, 4, (1, L), generator=g), 4).to(dtype)


def test_mamba_mixer_is_causal():
    torch.manual_seed(0)
    mixer = MambaMixer(8, d_state=4).double()
    u = torch.randn(1, 30, 8, dtype=torch.float64)
    changed = u.clone()
    changed[:, 20:] += torch.randn(1, 10, 8, dtype=torch.float64)
    a, b = mixer(u), mixer(changed)
    torch.testing.assert_close(a[:, :20], b[:, :20], rtol=0, atol=0)
    assert (a[:, 20:] - b[:, 20:]).abs().max() > 1e-3


def test_bimamba_reverse_direction_is_anticausal_and_tied():
    torch.manual_seed(0)
    mixer = BiMambaMixer(8, d_state=4, weight_tie=True).double()
    assert mixer.mamba_rev.in_proj.weight is mixer.mamba_fwd.in_proj.weight
    assert mixer.mamba_rev.out_proj.weight is mixer.mamba_fwd.out_proj.weight
    assert mixer.mamba_rev.conv1d.weight is not mixer.mamba_fwd.conv1d.weight
    u = torch.randn(1, 30, 8, dtype=torch.float64)
    changed = u.clone()
    changed[:, :10] += 1.0
    reverse = lambda h: mixer.mamba_rev(h.flip(1)).flip(1)  # noqa: E731
    torch.testing.assert_close(reverse(u)[:, 10:], reverse(changed)[:, 10:], rtol=0, atol=0)
    # the sum of both directions sees the change everywhere
    assert (bimamba(mixer, u)[:, 10:] - bimamba(mixer, changed)[:, 10:]).abs().max() > 1e-3


def test_bimamba_untied_has_separate_projections():
    mixer = BiMambaMixer(8, d_state=4, weight_tie=False)
    assert mixer.mamba_rev.in_proj.weight is not mixer.mamba_fwd.in_proj.weight
    assert mixer.tied_parameter_names() == {}


def test_track_model_outputs_and_n_embedding():
    model = build_random_test_model().double()
    x = random_onehot(50)
    out = model(x)
    assert list(out) == ["track"] and out["track"].shape == (1, 50, 1)
    # an N (all-zero row) embeds as the N token embedding (the bias), a base as W[:, k] + b
    x[0, 7] = 0
    x[0, 8] = torch.tensor([0.0, 0.0, 1.0, 0.0])
    embedded = model.embedding(x)[0]
    torch.testing.assert_close(embedded[7], model.embedding.bias)
    torch.testing.assert_close(embedded[8], model.embedding.weight[:, 2] + model.embedding.bias)
    assert model.embedding.bias.abs().min() > 0


def test_random_test_model_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = build_random_test_model()
    after = torch.rand(1)
    b = build_random_test_model()
    assert torch.equal(expected_next, after)
    assert state_checksum(a.state_dict()) == state_checksum(b.state_dict())
    info = load_model("random-test").info
    assert info.trained is False and "untrained" in info.note
    assert info.checksum == state_checksum(a.state_dict())
    assert info.n_parameters == sum(p.numel() for p in a.parameters())


def test_checksum_changes_with_any_weight():
    model = build_random_test_model()
    before = state_checksum(model.state_dict())
    with torch.no_grad():
        model.track_head.bias[0] += 1e-6
    assert state_checksum(model.state_dict()) != before


def small_model(**overrides):
    config = TrackSSMConfig(d_model=8, n_layer=2, d_state=4, channels=("a", "b"), **overrides)
    torch.manual_seed(1)
    return TrackSSM(config)


def test_checkpoint_round_trip_stores_tied_weights_once(tmp_path):
    model = small_model()
    save_checkpoint(model, tmp_path / "ckpt")
    stored = safetensors.torch.load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert "layers.0.mixer.mamba_fwd.in_proj.weight" in stored
    assert "layers.0.mixer.mamba_rev.in_proj.weight" not in stored
    loaded = load_checkpoint(tmp_path / "ckpt")
    layer = loaded.model.layers[0].mixer
    assert layer.mamba_rev.in_proj.weight is layer.mamba_fwd.in_proj.weight
    x = random_onehot(40, dtype=torch.float32)
    torch.testing.assert_close(loaded.model(x)["track"], model(x)["track"], rtol=0, atol=0)
    assert loaded.info.checksum == state_checksum(model.state_dict())
    assert loaded.info.trained is True and loaded.info.model_id == "ckpt"
    assert loaded.model.output_channels == {"track": ["a", "b"]}


def test_checkpoint_from_torch_bin(tmp_path):
    model = small_model(bidirectional=False)
    save_checkpoint(model, tmp_path)
    state = safetensors.torch.load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = load_checkpoint(tmp_path)
    x = random_onehot(20, dtype=torch.float32)
    torch.testing.assert_close(loaded.model(x)["track"], model(x)["track"], rtol=0, atol=0)


def edit_weights(directory, edit):
    path = directory / "model.safetensors"
    state = safetensors.torch.load_file(str(path))
    edit(state)
    safetensors.torch.save_file(state, str(path))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("track_head.bias"), "missing weight 'track_head.bias'"),
        (lambda s: s.update(extra=torch.zeros(2)), "unexpected weight 'extra'"),
        (lambda s: s.update({"track_head.bias": torch.zeros(3)}), "weight 'track_head.bias' has shape (3,)"),
        (lambda s: s["norm_f.weight"].__setitem__(0, float("nan")), "'norm_f.weight' holds NaN or infinite"),
        (lambda s: s["norm_f.weight"].__setitem__(0, float("inf")), "'norm_f.weight' holds NaN or infinite"),
    ],
)
def test_bad_weights_are_named(tmp_path, edit, message):
    save_checkpoint(small_model(), tmp_path)
    edit_weights(tmp_path, edit)
    with pytest.raises(ModelError, match=None) as info:
        load_checkpoint(tmp_path)
    assert message in str(info.value)


def test_config_errors(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "hyena"}))
    with pytest.raises(ModelError, match="'hyena' is not supported"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "pgf-track-ssm", "d_modle": 8}))
    with pytest.raises(ModelError, match="unknown config keys: d_modle"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "pgf-track-ssm"}))
    with pytest.raises(ModelError, match="neither model.safetensors nor pytorch_model.bin"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ModelError, match="cannot read weights"):
        load_checkpoint(tmp_path)


def test_load_model_names(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(str(tmp_path / "nope"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelError, match="is a file"):
        load_model(str(tmp_path / "file"))
    loaded = load_model("random-test", dtype=torch.float64)
    assert next(loaded.model.parameters()).dtype == torch.float64
    assert not loaded.model.training
