"""The shipped built-in model: it loads, reproduces its stored prediction, and its card is its evaluation."""

import json
import tomllib
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from helpers import load_script
from pgf.cli.app import app
from pgf.io.onehot import one_hot
from pgf.models.registry import BUILTIN_DIR, load_model

ROOT = Path(__file__).resolve().parents[1]


def test_builtin_loads_as_a_trained_two_channel_track_model():
    loaded = load_model("builtin")
    assert loaded.info.model_id == "builtin" and loaded.info.trained
    assert "simulated DNA" in loaded.info.note
    assert loaded.model.output_channels == {"track": ["expression", "accessibility"]}
    assert (BUILTIN_DIR / "model.safetensors").stat().st_size < 5_000_000


def test_builtin_reproduces_its_stored_prediction():
    finalize = load_script("finalize_builtin")
    stored = json.loads((BUILTIN_DIR / "reference_prediction.json").read_text())
    model = load_model("builtin").model
    onehot = torch.from_numpy(one_hot(finalize.reference_input())).float().unsqueeze(0)
    assert onehot.shape[1] == stored["length"]
    with torch.no_grad():
        track = model(onehot)["track"][0].numpy()
    values = np.array(stored["values"])
    np.testing.assert_allclose(track[stored["positions"]], values, rtol=1e-4, atol=1e-4 * np.abs(values).max())
    assert np.abs(values).max() > 0.1  # not a dead model


def test_model_card_is_rendered_from_the_evaluation():
    finalize = load_script("finalize_builtin")
    config = json.loads((BUILTIN_DIR / "config.json").read_text())
    training = json.loads((BUILTIN_DIR / "training_log.json").read_text())
    evaluation = json.loads((BUILTIN_DIR / "evaluation.json").read_text())
    assert (BUILTIN_DIR / "MODEL_CARD.md").read_text() == finalize.render_card(config, training, evaluation)
    # the evaluation was run on exactly these weights
    assert evaluation["checksum"] == load_model("builtin").info.checksum


def test_model_card_names_the_one_command_recipe_when_there_was_one():
    finalize = load_script("finalize_builtin")
    config = json.loads((BUILTIN_DIR / "config.json").read_text())
    training = json.loads((BUILTIN_DIR / "training_log.json").read_text())
    evaluation = json.loads((BUILTIN_DIR / "evaluation.json").read_text())
    recipe = {"command": "python scripts/train_builtin_recipe.py r.json --out runs/r", "phases": ["a", "b"],
              "wall_seconds": 3000.0}
    card = finalize.render_card(config, {**training, "recipe": recipe}, evaluation)
    assert "One command trains it" not in finalize.render_card(config, {**training, "recipe": None}, evaluation)
    assert f"`{recipe['command']}` (2 phases, 50.0 min of wall time" in card
    assert "on the CPU it ran on" in card
    gpu_card = finalize.render_card(config, {**training, "device": "NVIDIA H200"}, evaluation)
    assert "on a GPU (NVIDIA H200)" in gpu_card


def test_builtin_files_are_package_data():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["pgf.models"]
    shipped = sorted(p.name for p in BUILTIN_DIR.iterdir() if p.is_file())
    for name in shipped:
        assert any(Path("builtin", name).match(pattern) for pattern in package_data), name


def test_models_show_builtin():
    result = CliRunner().invoke(app, ["models", "show", "builtin"])
    assert result.exit_code == 0, result.output
    assert "trained         yes" in result.stdout
    assert "expression" in result.stdout
