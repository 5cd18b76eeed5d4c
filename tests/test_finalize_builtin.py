"""The model card's template and the shipped training commands, against today's scripts."""

import json
import shlex
from pathlib import Path

from pgf.models.registry import BUILTIN_DIR
from scripts import finalize_builtin, train_builtin

ROOT = Path(__file__).resolve().parents[1]


def _shipped(name: str) -> dict:
    return json.loads((BUILTIN_DIR / f"{name}.json").read_text())


def test_the_template_renders_the_shipped_card_from_the_shipped_files():
    card = finalize_builtin.render_card(_shipped("config"), _shipped("training_log"), _shipped("evaluation"))
    assert card == (BUILTIN_DIR / "MODEL_CARD.md").read_text()
    assert "$" not in card  # every placeholder filled


def test_the_training_commands_in_the_card_run_with_the_same_settings_today():
    """Every phase's logged command parses with today's train_builtin.py into the values it
    logged, so the card's commands still reproduce the shipped model."""
    training = _shipped("training_log")
    for run in [training, *training["fine_tuning"]]:
        argv = shlex.split(run["command"])[2:]  # after `python scripts/train_builtin.py`
        parsed = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(train_builtin.parse_args(argv)).items()}
        as_logged = json.loads(json.dumps(parsed))  # tuples become lists, as in the log
        assert as_logged.pop("device") == "auto"  # the shipped runs predate --device (they ran on the CPU)
        assert as_logged == {key: run["arguments"][key] for key in as_logged}


def test_the_recipe_phases_parse():
    recipe = json.loads((ROOT / "configs" / "builtin_recipe_fast.json").read_text())
    for phase in recipe["phases"]:
        train_builtin.parse_args(["--out", "x", *phase["args"]])
