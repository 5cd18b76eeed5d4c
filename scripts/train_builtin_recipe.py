"""Train the built-in model with one command: the phases of a recipe, each a
scripts/train_builtin.py run started from the previous phase's checkpoint.

    python -m scripts.train_builtin_recipe configs/builtin_recipe_fast.json --out runs/fast   # repo root

A recipe is JSON: {"threads": 2, "phases": [{"name": "base", "args": ["--steps", "700"]},
{"name": "curriculum", "args": [...]}, ...]}. Phase k trains into OUT/<name> from
OUT/<name of phase k-1> (`--init-from` is added; the first phase starts fresh), with
`--threads` from the recipe unless the phase sets its own. A phase whose checkpoint and
training log are already there is kept, so a stopped run resumes where it stopped.
OUT/recipe_log.json lists every phase's command and wall seconds, and their sum. The model
goes to OUT/model: the last phase's weights and config with one training log for all phases
(the first phase's, the later ones under `fine_tuning`), the layout of the shipped model's
folder, ready for bench/evaluate_builtin.py and scripts/finalize_builtin.py.
Imports nothing from its sibling scripts, so `python scripts/train_builtin_recipe.py` runs too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

# run as a file (it imports no sibling script), so the recipe works from any directory
TRAIN = Path(__file__).resolve().parent / "train_builtin.py"
TRAIN_COMMAND = "python -m scripts.train_builtin"  # how the logs spell a phase's command


def load_recipe(path: Path) -> dict:
    """The recipe, checked: named phases with argument lists, no --out or --init-from of their own."""
    try:
        recipe = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"error: cannot read recipe {path}: {error}")
    phases = recipe.get("phases")
    if not isinstance(phases, list) or not phases:
        raise SystemExit(f"error: recipe {path} has no 'phases' list")
    names = [phase.get("name") for phase in phases]
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise SystemExit(f"error: recipe {path}: every phase needs its own non-empty 'name'")
    for phase in phases:
        args = phase.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise SystemExit(f"error: recipe {path}: phase {phase['name']!r} 'args' must be a list of strings")
        if {"--out", "--init-from"} & set(args):
            raise SystemExit(f"error: recipe {path}: phase {phase['name']!r} sets --out or --init-from; the recipe chains them")
    return recipe


def phase_commands(recipe: dict, out: Path) -> list[tuple[str, Path, list[str]]]:
    """(name, output folder, train_builtin.py arguments) of every phase, in order."""
    commands, previous = [], None
    for phase in recipe["phases"]:
        folder = out / phase["name"]
        args = ["--out", str(folder)]
        if previous is not None:
            args += ["--init-from", str(previous)]
        if "--threads" not in phase.get("args", []) and "threads" in recipe:
            args += ["--threads", str(recipe["threads"])]
        commands.append((phase["name"], folder, args + list(phase.get("args", []))))
        previous = folder
    return commands


def finished(folder: Path) -> bool:
    """Whether a phase's checkpoint and training log are both there (it is then kept)."""
    return (folder / "model.safetensors").is_file() and (folder / "training_log.json").is_file()


def write_model_folder(out: Path, commands: list[tuple[str, Path, list[str]]], log: dict) -> Path:
    """OUT/model: the last phase's config.json and model.safetensors, and a training_log.json
    that is the first phase's summary with every later phase's under `fine_tuning` and the
    recipe's command and wall time under `recipe`."""
    folder = out / "model"
    folder.mkdir(exist_ok=True)
    last = commands[-1][1]
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(last / name, folder / name)
    first, *later = [json.loads((phase_folder / "training_log.json").read_text()) for _, phase_folder, _ in commands]
    first["fine_tuning"] = later
    first["recipe"] = {"command": f"python -m scripts.train_builtin_recipe {log['recipe']} --out {out}",
                       "phases": [p["name"] for p in log["phases"]], "wall_seconds": log["seconds"]}
    (folder / "training_log.json").write_text(json.dumps(first) + "\n")
    return folder


def run_phase(name: str, folder: Path, phase_args: list[str], earlier: dict) -> dict:
    """Train one phase (or keep it, with its time from the `earlier` log entry, when its
    checkpoint is there); its recipe_log.json entry."""
    entry = {"name": name, "command": " ".join([TRAIN_COMMAND, *phase_args])}
    if finished(folder):
        entry["kept"] = True
        if "seconds" in earlier:
            entry["seconds"] = earlier["seconds"]
        print(f"phase {name}: kept {folder} (already trained)", flush=True)
    else:
        print(f"phase {name}: {entry['command']}", flush=True)
        began = time.perf_counter()
        done = subprocess.run([sys.executable, str(TRAIN), *phase_args])
        if done.returncode != 0:
            raise SystemExit(f"error: phase {name} failed (exit {done.returncode}); rerun to resume from it")
        entry["seconds"] = round(time.perf_counter() - began, 1)
    entry["train_seconds"] = json.loads((folder / "training_log.json").read_text())["train_seconds"]
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/recipe"))
    parser.add_argument("--dry-run", action="store_true", help="print the phases' commands and stop")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    commands = phase_commands(recipe, args.out)
    if args.dry_run:
        for _, _, phase_args in commands:
            print(" ".join([TRAIN_COMMAND, *phase_args]))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "recipe_log.json"
    earlier = {p["name"]: p for p in json.loads(log_path.read_text())["phases"]} if log_path.is_file() else {}
    log = {"recipe": str(args.recipe), "phases": []}
    for name, folder, phase_args in commands:
        log["phases"].append(run_phase(name, folder, phase_args, earlier.get(name, {})))
    # wall time of every phase (process start and data set-up included), also of phases a
    # resumed run kept; null when a kept phase's time is unknown
    timed = [p.get("seconds") for p in log["phases"]]
    log["seconds"] = round(sum(timed), 1) if None not in timed else None
    log["model"] = str(write_model_folder(args.out, commands, log))
    log_path.write_text(json.dumps(log, indent=1) + "\n")
    took = f"{log['seconds'] / 60:.1f} min of training" if log["seconds"] is not None else "unknown time (kept phases)"
    print(f"trained {log['model']}: {took}", flush=True)


if __name__ == "__main__":
    main()
