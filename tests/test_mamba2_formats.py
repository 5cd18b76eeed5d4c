"""Reading the Mamba-2 formats' configs: the mamba_ssm native format found without a model_type, its
Mamba-1 layers, both Caduceus layouts, and one-line errors naming what pgf does not understand."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from helpers import caduceus_mamba2_checkpoint, hf_mamba2_checkpoint, native_mamba2_checkpoint, onehot
from pgf.cli.app import app
from pgf.errors import ModelError
from pgf.models.registry import load_model


def edit_config(directory, edit):
    config = json.loads((directory / "config.json").read_text())
    edit(config)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def mamba1_weights(d_model=8, n_layer=2, E=16, N=4, R=1, V=16, seed=0):
    """A Mamba-1 LM state dict under mamba_ssm's native names (backbone.embedding.*)."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape, scale=0.5: torch.randn(*shape, generator=g) * scale  # noqa: E731
    state = {"backbone.embedding.weight": rand(V, d_model), "backbone.norm_f.weight": 1 + rand(d_model, scale=0.3)}
    for i in range(n_layer):
        m = f"backbone.layers.{i}.mixer."
        state |= {
            m + "in_proj.weight": rand(2 * E, d_model), m + "conv1d.weight": rand(E, 1, 4), m + "conv1d.bias": rand(E),
            m + "x_proj.weight": rand(R + 2 * N, E), m + "dt_proj.weight": rand(E, R),
            m + "dt_proj.bias": torch.log(torch.expm1(torch.rand(E, generator=g) * 0.5 + 0.05)),
            m + "A_log": torch.log(torch.rand(E, N, generator=g) * 4 + 0.5), m + "D": rand(E),
            m + "out_proj.weight": rand(d_model, E), f"backbone.layers.{i}.norm.weight": 1 + rand(d_model, scale=0.3),
        }
    state["lm_head.weight"] = state["backbone.embedding.weight"]
    return state


def test_native_mamba1_layers_equal_the_same_weights_as_hugging_face_mamba(tmp_path):
    """mamba_ssm native with "layer": "Mamba1" against the transformers-checked HF Mamba loader."""
    state = mamba1_weights()
    vocab = {"A": 7, "C": 8, "G": 9, "T": 10, "N": 11}
    native = tmp_path / "native"
    native.mkdir()
    torch.save(state, native / "pytorch_model.bin")
    (native / "config.json").write_text(json.dumps({
        "d_model": 8, "n_layer": 2, "vocab_size": 12, "ssm_cfg": {"d_state": 4, "dt_min": 0.001}, "rms_norm": True,
        "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8, "tie_embeddings": True,
        "pgf_vocab": vocab,
    }))
    hf = tmp_path / "hf"
    hf.mkdir()
    torch.save({k.replace("backbone.embedding.", "backbone.embeddings."): v for k, v in state.items()},
               hf / "pytorch_model.bin")
    (hf / "config.json").write_text(json.dumps({
        "model_type": "mamba", "vocab_size": 16, "hidden_size": 8, "state_size": 4, "num_hidden_layers": 2,
        "pgf_vocab": vocab,
    }))
    a, b = load_model(str(native), dtype=torch.float64), load_model(str(hf), dtype=torch.float64)
    assert "2 Mamba-1 layers" in a.info.architecture
    x = onehot(80)
    with torch.no_grad():
        torch.testing.assert_close(a.model(x)["logits"], b.model(x)["logits"], rtol=1e-12, atol=1e-12)


def test_nested_caduceus_without_a_version_reads_the_weights(tmp_path):
    directory = caduceus_mamba2_checkpoint(tmp_path / "c", layout="nested")[0]
    stated = load_model(str(directory)).model
    edit_config(directory, lambda c: c["layer_cfg"]["mamba_cfg"].pop("version"))
    unstated = load_model(str(directory)).model
    x = onehot(40, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(unstated(x)["logits"], stated(x)["logits"], rtol=0, atol=0)


def test_flat_and_nested_caduceus_layouts_agree(tmp_path):
    nested = load_model(str(caduceus_mamba2_checkpoint(tmp_path / "n", layout="nested")[0])).model
    flat = load_model(str(caduceus_mamba2_checkpoint(tmp_path / "f", layout="flat")[0])).model
    x = onehot(40, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(flat(x)["logits"], nested(x)["logits"], rtol=0, atol=0)


def native(tmp_path):
    return native_mamba2_checkpoint(tmp_path / "native")[0]


def nested(tmp_path):
    return caduceus_mamba2_checkpoint(tmp_path / "nested", layout="nested")[0]


def flat(tmp_path):
    return caduceus_mamba2_checkpoint(tmp_path / "flat", layout="flat")[0]


def hf(tmp_path):
    return hf_mamba2_checkpoint(tmp_path / "hf")[0]


def ssm(config):
    return config["ssm_cfg"]


BAD_CONFIGS = [
    (native, lambda c: c.update(attn_layer_idx=[1]), "layers [1] (attn_layer_idx) are attention layers: not a selective SSM"),
    (native, lambda c: ssm(c).update(use_fancy_kernel=True), "ssm_cfg key 'use_fancy_kernel' is not understood"),
    (native, lambda c: ssm(c).update(layer="Mamba3"), "ssm_cfg layer 'Mamba3' is not understood"),
    (native, lambda c: ssm(c).update(dt_rank="auto"), "ssm_cfg key 'dt_rank' is not understood by pgf's Mamba2 mixer"),
    (native, lambda c: ssm(c).update(ngroups=3), "ngroups 3 must divide the number of heads (4)"),
    (native, lambda c: ssm(c).update(headdim="8"), "ssm_cfg headdim = '8' is not understood"),
    (native, lambda c: ssm(c).update(dt_limit=[1.0, 0.5]), "ssm_cfg dt_limit = [1.0, 0.5] is not understood"),
    (native, lambda c: c.update(mixer_type="mamba"), "config key 'mixer_type' is not understood"),
    (nested, lambda c: c["layer_cfg"]["mamba_cfg"].update(version="v3"), "layer_cfg.mamba_cfg.version 'v3' is not understood"),
    (nested, lambda c: c["layer_cfg"].update(mode="hybrid"), "layer_cfg.mode 'hybrid' is not understood"),
    (nested, lambda c: c["layer_cfg"]["mamba_cfg"]["ssm_cfg"].update(foo=1), "layer_cfg.mamba_cfg.ssm_cfg key 'foo' is not understood"),
    (nested, lambda c: c["layer_cfg"]["mamba_cfg"].update(mlp_cfg={"hidden_features": 64, "act": "gelu"}),
     "mlp_cfg key 'act' is not understood"),
    (nested, lambda c: c["layer_cfg"]["mamba_cfg"].update(mlp_cfg={"hidden_features": 64}),
     "a GatedMLP (d_intermediate / mlp_cfg) in an rcps model is not supported"),
    (flat, lambda c: ssm(c).update(layer="Hyena"), "ssm_cfg layer 'Hyena' is not understood"),
    (flat, lambda c: ssm(c).update(d_ssm=30), "d_ssm 30 must be a multiple of headdim 8"),
    (hf, lambda c: c.update(num_heads=3), "num_heads·head_dim (24) differs from expand·hidden_size (32)"),
    (hf, lambda c: c.update(rms_norm=False), "rms_norm False is not supported"),
    (hf, lambda c: c.update(time_step_limit=[0.0, "lots"]), "time_step_limit = [0.0, 'lots'] is not understood"),
]


@pytest.mark.parametrize("make, edit, message", BAD_CONFIGS)
def test_bad_configs_are_one_line_errors_naming_the_field(tmp_path, make, edit, message):
    directory = edit_config(make(tmp_path), edit)
    with pytest.raises(ModelError) as info:
        load_model(str(directory))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_cli_reports_a_bad_config_without_a_traceback(tmp_path):
    directory = edit_config(native(tmp_path), lambda c: c.update(attn_layer_idx=[0]))
    result = CliRunner().invoke(app, ["models", "show", str(directory)])
    assert result.exit_code == 2
    assert "not a selective SSM" in result.stderr and "Traceback" not in result.output


def test_transformers_5_infinity_and_dt_limit_are_read(tmp_path):
    model = load_model(str(hf(tmp_path))).model
    assert model.backbone.layers[0].mixer.dt_limit == (0.0, math.inf)
    directory = edit_config(native(tmp_path), lambda c: ssm(c).update(dt_limit=[0.01, 0.5]))
    assert load_model(str(directory)).model.backbone.layers[1].mixer.dt_limit == (0.01, 0.5)
