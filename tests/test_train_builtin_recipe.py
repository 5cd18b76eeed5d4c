"""scripts/train_builtin_recipe.py: the phases of a recipe chained into one command."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import train_builtin_recipe as recipe_script

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--short-length", "1024", "--short-batch", "1", "--long-length", "8192", "--long-pair-max", "7000",
         "--long-start", "100", "--validate-every", "100"]


def write(tmp_path, recipe) -> Path:
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return path


@pytest.mark.parametrize("recipe, message", [
    ({"phases": []}, "no 'phases' list"),
    ({"phases": [{"name": "a"}, {"name": "a"}]}, "its own non-empty 'name'"),
    ({"phases": [{"name": "a", "args": ["--out", "x"]}]}, "sets --out or --init-from"),
    ({"phases": [{"name": "a", "args": "--steps 2"}]}, "must be a list of strings"),
])
def test_bad_recipes_are_refused_with_the_reason(tmp_path, recipe, message):
    with pytest.raises(SystemExit, match=message):
        recipe_script.load_recipe(write(tmp_path, recipe))


def test_phases_chain_from_the_previous_checkpoint_with_the_recipe_threads(tmp_path):
    recipe = {"threads": 2, "phases": [{"name": "a", "args": ["--steps", "5"]},
                                       {"name": "b", "args": ["--threads", "1", "--lr", "1e-3"]}]}
    (a, folder_a, args_a), (b, folder_b, args_b) = recipe_script.phase_commands(recipe, tmp_path)
    assert (a, b) == ("a", "b") and folder_a == tmp_path / "a"
    assert args_a == ["--out", str(folder_a), "--threads", "2", "--steps", "5"]
    assert args_b == ["--out", str(folder_b), "--init-from", str(folder_a), "--threads", "1", "--lr", "1e-3"]


@pytest.mark.slow
def test_a_small_recipe_trains_both_phases_and_a_rerun_keeps_them(tmp_path):
    recipe = write(tmp_path, {"threads": 1, "phases": [
        {"name": "first", "args": ["--steps", "2", "--layers", "1", *SMALL]},
        {"name": "second", "args": ["--steps", "1", "--lr", "1e-3", *SMALL]},
    ]})
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "scripts.train_builtin_recipe", str(recipe), "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300, cwd=ROOT)
    log = json.loads((out / "recipe_log.json").read_text())
    assert [p["name"] for p in log["phases"]] == ["first", "second"]
    assert log["model"] == str(out / "model")
    assert (out / "model" / "model.safetensors").read_bytes() == (out / "second" / "model.safetensors").read_bytes()
    assert (out / "model" / "config.json").read_text() == (out / "second" / "config.json").read_text()
    second = json.loads((out / "second" / "training_log.json").read_text())
    assert second["arguments"]["init_from"] == str(out / "first")
    combined = json.loads((out / "model" / "training_log.json").read_text())
    assert combined["arguments"]["steps"] == 2 and [p["arguments"]["steps"] for p in combined["fine_tuning"]] == [1]
    assert combined["command"].startswith("python -m scripts.train_builtin --out ")
    assert combined["recipe"]["phases"] == ["first", "second"] and combined["recipe"]["wall_seconds"] == log["seconds"]
    assert log["seconds"] == pytest.approx(sum(p["seconds"] for p in log["phases"]), abs=0.2) and log["seconds"] > 0

    again = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.stdout.count("kept") == 2
    rerun_log = json.loads((out / "recipe_log.json").read_text())
    assert rerun_log["seconds"] == log["seconds"]  # the first run's phase times are kept


def test_a_failing_phase_stops_the_recipe_with_a_message(tmp_path):
    """Also: the recipe runs as a file (the shipped training log's commands spell it so)."""
    recipe = write(tmp_path, {"phases": [{"name": "bad", "args": ["--steps", "not-a-number"]}]})
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_builtin_recipe.py"), str(recipe),
                           "--out", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "error: phase bad failed" in done.stderr
    assert not (tmp_path / "runs" / "recipe_log.json").exists()
