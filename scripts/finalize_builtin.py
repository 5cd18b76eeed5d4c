"""Finish a trained built-in model: its reference prediction and its model card.

    python scripts/train_builtin.py --out DIR
    python bench/evaluate_builtin.py --model DIR --out DIR/evaluation.json
    python scripts/finalize_builtin.py DIR

Writes DIR/reference_prediction.json (outputs on a fixed simulated sequence,
checked by the tests against the shipped weights) and DIR/MODEL_CARD.md,
rendered only from DIR's config.json, training_log.json and evaluation.json,
so every number in the card comes from the training log or the evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from pgf.io.onehot import one_hot
from pgf.models.registry import load_checkpoint
from pgf.sim.grammar import ENHANCER_WEIGHTS, PROMOTER_WEIGHTS, Grammar, Layout, simulate_chromosome
from pgf.sim.motifs import load_motifs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_builtin import long_layout  # noqa: E402  (the training layouts live in the training script)

REFERENCE_SEED = 7
REFERENCE_LENGTH = 3000
REFERENCE_POSITIONS = list(range(0, REFERENCE_LENGTH, 97))


def reference_input() -> str:
    """A fixed simulated 3-kb sequence with densely planted elements."""
    layout = Layout(promoter_every=1_000, enhancer_every=1_000, insulator_every=3_000, min_gap=100)
    return simulate_chromosome("reference", REFERENCE_LENGTH, np.random.default_rng(REFERENCE_SEED), layout).sequence


def reference_prediction(directory: Path) -> dict:
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


def _truth_ism(ism: dict) -> str:
    """The same Pearson for the simulator's own truth, where the evaluation reports it."""
    if "truth_pooled_pearson" not in ism:
        return ""
    return f"; the truth itself: {ism['truth_pooled_pearson']}"


def _paired_text(args: dict) -> str:
    """The counterfactual-pair part of the training recipe, when the run used one."""
    if not args.get("paired_weight"):
        return ""
    return (
        f"; every window is paired with a copy in which one enhancer (half the time every enhancer) is shuffled "
        f"and the truth recomputed, and {args['paired_weight']:g} x the MSE of the predicted expression difference "
        f"between the two (over its variance) is added, which trains the long-range path alone; the B and C rows "
        f"of x_proj start scaled by {args.get('bc_scale', 1.0):g}"
    )


def _command(summary: dict) -> str:
    """A run's command as today's train_builtin.py reproduces it: runs from before the graded
    site affinities (no `affinity_scale` among their arguments) simulated what is now
    `--affinity-scale 0`, so that is added, marked with a dagger."""
    if "affinity_scale" in summary["arguments"]:
        return f"`{summary['command']}`"
    return f"`{summary['command']} --affinity-scale 0` (†)"


AFFINITY_FOOTNOTE = (
    "(†) run before the simulator graded its sites by affinity: every planted site then counted "
    "fully, which is `--affinity-scale 0` of today's script (added to the command so that it reproduces the run)."
)


def _threads(training: dict, phases: list[dict]) -> str:
    """The thread counts the base run and its phases ran with ("1" or "1-2")."""
    counts = sorted({run.get("threads", 1) for run in [training, *phases]})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def _short_every(phases: list[dict]) -> str:
    """'2', or '2 (phase 1), 3 (phase 2)' when the phases differ in --short-every."""
    values = [p["arguments"]["short_every"] for p in phases]
    if len(set(values)) == 1:
        return str(values[0])
    return ", ".join(f"{v} (phase {i})" for i, v in enumerate(values, 1))


def _fine_tuning_text(training: dict) -> str:
    """The curriculum fine-tuning phases that followed the base run, if any (training_log.json's
    `fine_tuning`: one summary per phase, as train_builtin.py writes it)."""
    phases = training.get("fine_tuning", [])
    if not phases:
        return ""
    lines = [
        "",
        "Then fine-tuned, each phase starting from the previous one's weights (`--init-from`), on",
        "counterfactual pairs: every paired window comes with a copy in which one enhancer (half the time",
        "every enhancer) is shuffled and the truth recomputed, and W x the MSE of the predicted expression",
        "difference between the two (over its variance) is added to the loss; only the path from the",
        "enhancers to the promoter can produce that difference. Each `--stage STEPS:LENGTH:LO-HI` trains on",
        "windows of LENGTH bp whose distal pairs lie LO-HI bp apart, one step in "
        f"{_short_every(phases)} being a plain short batch,",
        "so the distance over which enhancers are read grows stage by stage"
        + ("" if not any(p["arguments"].get("taylor_weight") for p in phases) else
           "; phases with `--taylor-weight W` also train the model's first-order SNV effects on a 200-bp "
           "readout (its input gradient) toward the truth's, W x their MSE over its variance (double backward), "
           "and a stage ending in `:genome` uses the sample genome's sparse element spacing") + ":",
        "",
    ]
    rows = [["phase", "command", "minutes", "final validation Pearson", "pair-difference Pearson"]]
    for number, phase in enumerate(phases, 1):
        rows.append([
            str(number), _command(phase), f"{phase['train_seconds'] / 60:.1f}",
            ", ".join(str(v) for v in phase["final_validation_pearson"].values()),
            str(phase["final_validation_pair_difference_pearson"]),
        ])
    total = (training["train_seconds"] + sum(p["train_seconds"] for p in phases)) / 60
    lines += [
        _table(rows),
        "",
        "Pair-difference Pearson: predicted vs true expression difference between validation windows and "
        f"their enhancer-shuffled copies (the base run: {training.get('final_validation_pair_difference_pearson', 'not measured')}). "
        f"All phases together: {total:.0f} min on {_threads(training, phases)} CPU thread(s) each.",
    ]
    if any("affinity_scale" not in p["arguments"] for p in [training, *phases]):
        lines += ["", AFFINITY_FOOTNOTE]
    return "\n".join(lines) + "\n"


def _ran_on(training: dict) -> str:
    """'2 thread(s): 35.2 min on the CPU it ran on', or the GPU's name for a GPU run."""
    minutes = f"{training['train_seconds'] / 60:.1f} min"
    device = training.get("device", "cpu")
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


def render_card(config: dict, training: dict, evaluation: dict) -> str:
    """MODEL_CARD.md from the three JSON files (nothing else)."""
    args = training["arguments"]
    motifs = load_motifs()
    grammar = Grammar()
    long = long_layout(args["long_pair_max"])
    log = training["log"]
    validations = [e for e in log if "validation_pearson" in e]
    checkpoints = [validations[i] for i in sorted({0, len(validations) // 2, len(validations) - 1})]
    prediction = evaluation["prediction_pearson"]
    auroc = evaluation["motif_auroc"]
    distal = evaluation["distal_enhancers"]
    ism = evaluation["taylor_ism"]
    motif_rows = [["motif", "JASPAR id", "role", "weight"]] + [
        [m.name, m.matrix_id, m.role, str({**PROMOTER_WEIGHTS, **ENHANCER_WEIGHTS}.get(m.name, "-"))] for m in motifs.values()
    ]
    distal_rows = [["promoter", "enhancer", "distance", "best enhancer base rank", "enhancer / background", "promoter / background"]] + [
        [c["promoter"], c["enhancer"], f"{c['distance_bp']:,} bp", f"{c['best_enhancer_base_rank']:,} of {c['region_length']:,}",
         f"{c['enhancer_to_background_ratio']}x", f"{c['promoter_to_background_ratio']}x"]
        for c in distal["cases"]
    ]
    return f"""# pgf built-in model

`--model builtin` (the default of every pgf command). A bidirectional selective
state-space model (pgf-track-ssm: BiMamba blocks, weight-tied in/out projections)
with a per-position regression head, **trained on simulated DNA** whose regulatory
grammar is known exactly. It is a demonstration and a ground-truth check for
attribution methods; it is not a model of any real genome and its outputs mean
nothing on real sequence.

- checksum: `sha256:{evaluation['checksum']}`
- outputs (`track`): {', '.join(config['channels'])}
- config: d_model {config['d_model']}, {config['n_layer']} layers, d_state {config['d_state']}, d_conv {config['d_conv']},
  expand {config['expand']}, bidirectional strategy `{config['bidirectional_strategy']}`; trained on windows up to
  {config['context_length']:,} bp (longer regions run, exactly, one pass)

## Data recipe (pgf/sim)
Background: first-order Markov chain, GC 0.41, CpG observed/expected ~0.25.
Planted elements, built from JASPAR CORE matrices (pgf/sim/motifs.json, instances drawn
from each column's frequencies cubed):

{_table(motif_rows)}

- promoter: 1-3 core motifs in 150 bp, base strength = sum of weight x affinity;
- enhancer: 2-4 motifs in 200 bp, strength = sum of weight x affinity;
- insulator: a CTCF site, splitting the chromosome into domains;
- silencer: a REST site; promoters within {grammar.silencer_range:,} bp are scaled by {grammar.silencer_factor}.

A site's affinity is exp({grammar.affinity_scale:g} x (log P(instance) - log P(consensus))) under its matrix: planted
instances count 0.2-1 (truth_motifs.bed's score is 1000 x the affinity), and each mismatch lowers
a site's effect by how much it costs in the matrix.

Promoter activity = base x silencing x ({grammar.basal:g} + {grammar.max_boost:g} tanh(E / {grammar.max_boost:g})), E = the sum over
enhancers in the same CTCF-bounded domain of strength x exp(-distance / {grammar.decay_length:,.0f} bp): a promoter
without an enhancer in its domain runs at the basal {grammar.basal:g}, one with enhancers up to {grammar.basal + grammar.max_boost:g}x that.
Tracks, as Gaussian bumps on the planted motif sites: `expression` (sd {grammar.expression_width:g} bp) shares a
promoter's activity among its motifs by weight x affinity; `accessibility` (sd {grammar.accessibility_width:g} bp) is each
site's own height (half its weight, CTCF {grammar.insulator_accessibility:g}, REST {grammar.silencer_accessibility:g}; times its affinity): short range only.

Training examples are freshly simulated chromosomes (seeds from {training['seed']}; the sample
genome has its own seed and is never trained on), planted more densely than the sample genome:
{args['short_length']:,}-bp windows (batch {args['short_batch']}; a promoter every ~{1000 * args['short_spacing']:,.0f} bp, an enhancer
every ~{1500 * args['short_spacing']:,.0f} bp, a CTCF site every ~{3000 * args['short_spacing']:,.0f} bp), and from step {args['long_start']} one step
in {args['long_every']} a {args['long_length']:,}-bp window (a promoter every ~{long.promoter_every:,.0f} bp, an enhancer and a CTCF site
every ~{long.enhancer_every:,.0f} and ~{long.insulator_every:,.0f} bp) with two promoter-enhancer pairs
{long.distal_range[0]:,}-{long.distal_range[1]:,} bp apart (nothing between them, a CTCF site 1-3 kb beyond the promoter).

## Training
{_recipe_text(training)}{_command(training)} (seed {training['seed']}, {args['steps']} steps, AdamW lr {args['lr']} with
warm-up and cosine decay, loss = per-channel MSE / channel variance{_paired_text(args)}), torch {training['torch']},
{_ran_on(training)}.{(' ' + training['note'][0].upper() + training['note'][1:] + '.') if training.get('note') else ''}

{_table([["step", "loss", "validation Pearson (expression, accessibility)"]] + [[str(e['step']), str(e['loss']), ", ".join(map(str, e['validation_pearson']))] for e in checkpoints])}
{_fine_tuning_text(training)}
## Held-out evaluation on sample_data/ (`python bench/evaluate_builtin.py`)
| metric | value | target |
|---|---|---|
| prediction Pearson r, expression | {prediction['expression']} | >= 0.8 |
| prediction Pearson r, accessibility | {prediction['accessibility']} | >= 0.8 |
| motif AUROC of abs(input x gradient), target {auroc['target']} ({auroc['motif_bases']:,} motif vs {auroc['background_bases']:,} background bases) | {auroc['auroc']} | >= 0.95 |
| distal enhancers (>= 20 kb) in the top 1% of their region | {distal['enhancers_in_top_1_percent']} of {distal['n_cases']} | |
| Taylor-ISM vs exact ISM Pearson (pooled, {len(ism['windows'])} windows of 200 bp){_truth_ism(ism)} | {ism['pooled_pearson']} | >= 0.7 |
| Taylor-ISM vs exact ISM Pearson (mean over windows) | {ism['mean_window_pearson']} | |

Distal enhancers: gradient of one promoter's expression (summed over its centre +- 100 bp)
over its showcase region (sample_data/regions.bed); ranks among all bases of the region by
abs(input x gradient):

{_table(distal_rows)}

## Limitations
{_limitations(evaluation)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    directory = args.directory
    (directory / "reference_prediction.json").write_text(json.dumps(reference_prediction(directory)) + "\n")
    config = json.loads((directory / "config.json").read_text())
    training = json.loads((directory / "training_log.json").read_text())
    evaluation = json.loads((directory / "evaluation.json").read_text())
    (directory / "MODEL_CARD.md").write_text(render_card(config, training, evaluation))
    print(f"wrote {directory / 'reference_prediction.json'} and {directory / 'MODEL_CARD.md'}")


if __name__ == "__main__":
    main()
