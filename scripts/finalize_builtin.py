"""Finish a trained built-in model: its reference prediction and its model card.

    python -m scripts.train_builtin_recipe configs/builtin_recipe_fast.json --out runs/fast
    python -m bench.evaluate_builtin --model runs/fast/model --out runs/fast/model/evaluation.json
    python -m scripts.finalize_builtin runs/fast/model

(from the repository root). Writes DIR/reference_prediction.json (outputs on a fixed
simulated sequence, checked by the tests against the shipped weights) and DIR/MODEL_CARD.md,
scripts/templates/MODEL_CARD.md.tmpl filled only from DIR's config.json, training_log.json
(as scripts/train_builtin_recipe.py writes it: the base run, its `fine_tuning` phases and the
`recipe`) and evaluation.json, so every number in the card comes from the training log or the
evaluation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from string import Template

import numpy as np
import torch

from pgf.io.onehot import one_hot
from pgf.models.registry import load_checkpoint
from pgf.sim.grammar import ENHANCER_WEIGHTS, PROMOTER_WEIGHTS, Grammar, Layout, simulate_chromosome
from pgf.sim.motifs import load_motifs
from scripts.train_builtin import long_layout, short_layout

TEMPLATE = Path(__file__).resolve().parent / "templates" / "MODEL_CARD.md.tmpl"
REFERENCE_SEED = 7
REFERENCE_LENGTH = 3000
REFERENCE_POSITIONS = list(range(0, REFERENCE_LENGTH, 97))


def reference_input() -> str:
    """A fixed simulated 3-kb sequence with densely planted elements."""
    layout = Layout(promoter_every=1_000, enhancer_every=1_000, insulator_every=3_000, min_gap=100)
    return simulate_chromosome("reference", REFERENCE_LENGTH, np.random.default_rng(REFERENCE_SEED), layout).sequence


def reference_prediction(directory: Path) -> dict:
    """The model's outputs at REFERENCE_POSITIONS of reference_input() (rounded to 6 digits)."""
    model = load_checkpoint(directory).model.eval()
    onehot = torch.from_numpy(one_hot(reference_input())).float().unsqueeze(0)
    with torch.no_grad():
        track = model(onehot)["track"][0]
    return {
        "seed": REFERENCE_SEED,
        "length": REFERENCE_LENGTH,
        "positions": REFERENCE_POSITIONS,
        "values": [[round(float(v), 6) for v in track[p]] for p in REFERENCE_POSITIONS],
    }


def _table(rows: list[list[str]]) -> str:
    """A Markdown table; the first row is the header."""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def _limitations(evaluation: dict) -> str:
    """Which targets the evaluation misses, said plainly (from the numbers only)."""
    lines = []
    prediction = evaluation["prediction_pearson"]
    short = [f"{c} {v}" for c, v in prediction.items() if v < 0.8]
    if short:
        lines.append(f"- Prediction Pearson below the 0.8 target: {', '.join(short)}.")
    if evaluation["motif_auroc"]["auroc"] < 0.95:
        lines.append(f"- Motif AUROC {evaluation['motif_auroc']['auroc']} is below the 0.95 target.")
    distal = evaluation["distal_enhancers"]
    found, cases = distal["enhancers_in_top_1_percent"], distal["n_cases"]
    if found == 0:
        lines.append(
            f"- The long-range rule is not learned at >= 20 kb: none of the {cases} distal enhancers is among the "
            "top 1% of attributions for its promoter, whose own motifs dominate. Attributions from this model "
            "do not show distal enhancers."
        )
    elif found < cases:
        lines.append(
            f"- The long-range rule is learned only in part: {cases - found} of {cases} distal enhancers are not "
            "among the top 1% of attributions for their promoter (table above)."
        )
    if evaluation["taylor_ism"]["pooled_pearson"] < 0.7:
        lines.append(f"- Taylor-ISM vs exact ISM pooled Pearson {evaluation['taylor_ism']['pooled_pearson']} is below the 0.7 target.")
    return "\n".join(lines) if lines else "- Every evaluation target is met."


def _threads(training: dict, phases: list[dict]) -> str:
    """The thread counts the base run and its phases ran with ("1" or "1-2")."""
    counts = sorted({run["threads"] for run in [training, *phases]})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def _short_every(phases: list[dict]) -> str:
    """'2', or '2 (phase 1), 3 (phase 2)' when the phases differ in --short-every."""
    values = [p["arguments"]["short_every"] for p in phases]
    if len(set(values)) == 1:
        return str(values[0])
    return ", ".join(f"{v} (phase {i})" for i, v in enumerate(values, 1))


def _ran_on(training: dict) -> str:
    """'2 thread(s): 35.2 min on the CPU it ran on', or the GPU's name for a GPU run."""
    minutes = f"{training['train_seconds'] / 60:.1f} min"
    device = training.get("device", "cpu")  # the shipped log predates the field: a CPU run
    if device == "cpu":
        return f"{training['threads']} thread(s): {minutes} on the CPU it ran on"
    return f"on a GPU ({device}): {minutes}"


def _recipe_text(training: dict) -> str:
    """How to retrain the model with one command, when it came from scripts/train_builtin_recipe.py."""
    recipe = training.get("recipe")
    if not recipe:
        return ""
    minutes = f"{recipe['wall_seconds'] / 60:.1f} min" if recipe.get("wall_seconds") else "an unknown time"
    return (f"One command trains it, every phase below in turn: `{recipe['command']}` "
            f"({len(recipe['phases'])} phases, {minutes} of wall time on the machine it ran on).\n\n")


def _model_fields(config: dict) -> dict:
    """The architecture and the simulator's grammar and motifs."""
    grammar = Grammar()
    weights = {**PROMOTER_WEIGHTS, **ENHANCER_WEIGHTS}
    motif_rows = [["motif", "JASPAR id", "role", "weight"]] + [
        [m.name, m.matrix_id, m.role, str(weights.get(m.name, "-"))] for m in load_motifs().values()
    ]
    return {
        "channels": ", ".join(config["channels"]),
        **{key: config[key] for key in ("d_model", "n_layer", "d_state", "d_conv", "expand", "bidirectional_strategy")},
        "context_length": f"{config['context_length']:,}",
        "motif_table": _table(motif_rows),
        "silencer_range": f"{grammar.silencer_range:,}",
        "silencer_factor": grammar.silencer_factor,
        "decay_length": f"{grammar.decay_length:,.0f}",
        "max_activity": f"{grammar.basal + grammar.max_boost:g}",
        **{key: f"{getattr(grammar, key):g}" for key in (
            "affinity_scale", "basal", "max_boost", "expression_width", "accessibility_width",
            "insulator_accessibility", "silencer_accessibility")},
    }


def _training_fields(training: dict) -> dict:
    """The base run's windows, command and validation, and the fine-tuning phases' table."""
    args, phases = training["arguments"], training["fine_tuning"]
    short, long = short_layout(), long_layout(args["long_pair_max"])
    validations = [e for e in training["log"] if "validation_pearson" in e]
    checkpoints = [validations[i] for i in sorted({0, len(validations) // 2, len(validations) - 1})]
    phase_rows = [["phase", "command", "minutes", "final validation Pearson", "pair-difference Pearson"]] + [
        [str(number), f"`{phase['command']}`", f"{phase['train_seconds'] / 60:.1f}",
         ", ".join(str(v) for v in phase["final_validation_pearson"].values()),
         str(phase["final_validation_pair_difference_pearson"])]
        for number, phase in enumerate(phases, 1)
    ]
    total = (training["train_seconds"] + sum(p["train_seconds"] for p in phases)) / 60
    return {
        "seed": training["seed"], "steps": args["steps"], "lr": args["lr"], "torch": training["torch"],
        "short_length": f"{args['short_length']:,}", "short_batch": args["short_batch"],
        "short_promoter_every": f"{short.promoter_every:,.0f}", "short_enhancer_every": f"{short.enhancer_every:,.0f}",
        "short_insulator_every": f"{short.insulator_every:,.0f}",
        "long_start": args["long_start"], "long_every": args["long_every"], "long_length": f"{args['long_length']:,}",
        "long_promoter_every": f"{long.promoter_every:,.0f}", "long_enhancer_every": f"{long.enhancer_every:,.0f}",
        "long_insulator_every": f"{long.insulator_every:,.0f}",
        "long_pair_min": f"{long.distal_range[0]:,}", "long_pair_max": f"{long.distal_range[1]:,}",
        "recipe": _recipe_text(training), "command": training["command"], "ran_on": _ran_on(training),
        "checkpoint_table": _table([["step", "loss", "validation Pearson (expression, accessibility)"]] + [
            [str(e["step"]), str(e["loss"]), ", ".join(map(str, e["validation_pearson"]))] for e in checkpoints]),
        "short_every": _short_every(phases),
        "phase_table": _table(phase_rows),
        "base_pair_difference": training["final_validation_pair_difference_pearson"],
        "total_minutes": f"{total:.0f}",
        "threads": _threads(training, phases),
    }


def _evaluation_fields(evaluation: dict) -> dict:
    """The held-out evaluation's numbers and its distal-enhancer table."""
    auroc, distal, ism = evaluation["motif_auroc"], evaluation["distal_enhancers"], evaluation["taylor_ism"]
    distal_rows = [["promoter", "enhancer", "distance", "best enhancer base rank", "enhancer / background",
                    "promoter / background"]] + [
        [c["promoter"], c["enhancer"], f"{c['distance_bp']:,} bp", f"{c['best_enhancer_base_rank']:,} of {c['region_length']:,}",
         f"{c['enhancer_to_background_ratio']}x", f"{c['promoter_to_background_ratio']}x"]
        for c in distal["cases"]
    ]
    return {
        "checksum": evaluation["checksum"],
        "expression": evaluation["prediction_pearson"]["expression"],
        "accessibility": evaluation["prediction_pearson"]["accessibility"],
        "auroc_target": auroc["target"], "motif_bases": f"{auroc['motif_bases']:,}",
        "background_bases": f"{auroc['background_bases']:,}", "auroc": auroc["auroc"],
        "distal_found": distal["enhancers_in_top_1_percent"], "distal_cases": distal["n_cases"],
        "ism_windows": len(ism["windows"]), "truth_ism": ism["truth_pooled_pearson"],
        "ism_pooled": ism["pooled_pearson"], "ism_mean": ism["mean_window_pearson"],
        "distal_table": _table(distal_rows),
        "limitations": _limitations(evaluation),
    }


def render_card(config: dict, training: dict, evaluation: dict) -> str:
    """MODEL_CARD.md from the three JSON files (nothing else) and the template."""
    fields = {**_model_fields(config), **_training_fields(training), **_evaluation_fields(evaluation)}
    return Template(TEMPLATE.read_text()).substitute(fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    directory = parser.parse_args().directory
    (directory / "reference_prediction.json").write_text(json.dumps(reference_prediction(directory)) + "\n")
    config, training, evaluation = (json.loads((directory / f"{name}.json").read_text())
                                    for name in ("config", "training_log", "evaluation"))
    (directory / "MODEL_CARD.md").write_text(render_card(config, training, evaluation))
    print(f"wrote {directory / 'reference_prediction.json'} and {directory / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
