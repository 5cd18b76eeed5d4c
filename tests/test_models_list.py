"""`pgf models list`: the curated table (one data file, shared with the docs) and the cached column,
read from the standard Hub cache (HF_HUB_CACHE) without any network."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pgf.models.known import known_models


def run_list(tmp_path, *args):
    environment = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "pgf", "models", "list", *args], capture_output=True, text=True,
                          env=environment, timeout=120)


def cache_snapshot(cache, repo_id: str) -> None:
    """A snapshot of `repo_id`'s default branch in the Hub cache's on-disk layout."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / "config.json").write_text("{}")


def test_the_table_holds_every_known_model_and_the_issue_families():
    rows = known_models()
    ids = [row.id for row in rows]
    assert len(ids) == len(set(ids))
    assert "kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16" in ids
    assert {f"kuleshov-group/PlantCaduceus_l{n}" for n in (20, 24, 28, 32)} <= set(ids)
    assert {row.family for row in rows} == {"Caduceus", "PlantCaduceus", "PlantCAD2"}
    assert all(row.loads in ("yes", "untested") and row.card.startswith("https://huggingface.co/" + row.id) for row in rows)


def test_list_prints_each_id_and_marks_what_is_cached(tmp_path):
    cached_id = "kuleshov-group/PlantCaduceus_l20"
    cache_snapshot(tmp_path / "hub", cached_id)
    table = run_list(tmp_path)
    assert table.returncode == 0, table.stderr
    for row in known_models():
        assert row.id in table.stdout
    listed = run_list(tmp_path, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert rows[cached_id]["cached"] is True
    assert sum(row["cached"] for row in rows.values()) == 1
    assert rows["kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16"]["context_bp"] == 131072


def test_caduceus_parameter_counts_are_those_of_the_stated_configuration():
    """The table's Caduceus counts come from pgf's implementation of the configuration the id names."""
    import torch

    from pgf.models.caduceus import CaduceusConfig, CaduceusLM
    from pgf.models.registry import human_count

    stated = {row.id: row.parameters for row in known_models() if row.family == "Caduceus"}
    for model_id, parameters in stated.items():
        n_layer = 16 if "n_layer-16" in model_id else 4
        d_model = 118 if "d_model-118" in model_id else 256
        config = CaduceusConfig.from_dict({"d_model": d_model, "n_layer": n_layer, "rcps": "-ps_" in model_id,
                                           "complement_map": {7: 10, 8: 9, 9: 8, 10: 7}})
        with torch.device("meta"):
            model = CaduceusLM(config)
        assert human_count(sum(p.numel() for p in model.parameters())) == parameters, model_id


def published_config(d_model: int, n_layer: int, rcps: bool) -> dict:
    """config.json as the Caduceus repositories on the Hub publish it (keys, nesting and the init-only
    ssm_cfg fields of kuleshov-group/caduceus-*_seqlen-1k_d_model-118_n_layer-4_lr-8e-3)."""
    return {
        "architectures": ["CaduceusForMaskedLM"],
        "auto_map": {"AutoConfig": "configuration_caduceus.CaduceusConfig", "AutoModel": "modeling_caduceus.Caduceus",
                     "AutoModelForMaskedLM": "modeling_caduceus.CaduceusForMaskedLM"},
        "bidirectional": True, "bidirectional_strategy": "add", "bidirectional_weight_tie": True,
        "complement_map": {str(i): {7: 10, 8: 9, 9: 8, 10: 7}.get(i, i) for i in range(16)},
        "d_model": d_model, "fused_add_norm": True,
        "initializer_cfg": {"initializer_range": 0.02, "n_residuals_per_layer": 1, "rescale_prenorm_residual": True},
        "model_type": "caduceus", "n_layer": n_layer, "norm_epsilon": 1e-05, "pad_vocab_size_multiple": 8,
        "rcps": rcps, "residual_in_fp32": False, "rms_norm": True,
        "ssm_cfg": {"bias": False, "conv_bias": True, "d_conv": 4, "d_state": 16, "dt_init": "random",
                    "dt_init_floor": 0.0001, "dt_max": 0.1, "dt_min": 0.001, "dt_rank": "auto", "dt_scale": 1.0,
                    "expand": 2, "use_fast_path": True},
        "torch_dtype": "float32", "transformers_version": "4.38.1", "vocab_size": 16,
    }


def test_a_published_caduceus_config_loads_with_the_stated_size(tmp_path):
    """The published config layout (auto_map, initializer_cfg, init-only ssm_cfg fields, a vocabulary already
    padded to 16) loads, with the parameter count the table states, and its repository code is never needed."""
    import safetensors.torch
    import torch

    from pgf.models.caduceus import CaduceusConfig, CaduceusLM
    from pgf.models.registry import human_count, load_model

    config = published_config(118, 4, rcps=True)
    model = CaduceusLM(CaduceusConfig.from_dict(config))
    tied = model.tied_parameter_names()
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items() if k not in tied},
                                str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_model(str(tmp_path))
    stated = {row.id: row.parameters for row in known_models()}
    assert human_count(loaded.info.n_parameters) == stated["kuleshov-group/caduceus-ps_seqlen-1k_d_model-118_n_layer-4_lr-8e-3"]
    onehot = torch.nn.functional.one_hot(torch.randint(0, 4, (1, 40)), 4).float()
    torch.testing.assert_close(loaded.model(onehot)["logits"], model.eval()(onehot)["logits"])
