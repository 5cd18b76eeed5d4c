"""Train pgf's built-in model on simulated chromosomes (never the sample genome).

Every training example is a freshly simulated chromosome (pgf.sim.grammar,
seeds from --seed upwards; the sample genome uses its own seed and is only
used for evaluation) with elements planted more densely than in the sample
genome so that each window teaches something. Short windows (motifs, local
effects) throughout; from `--long-start` on, one step in `--long-every` is a
long window with promoter-enhancer pairs up to `--long-pair-max` bp apart (the
long-range rule). Loss: per-channel MSE divided by the channel's variance in
that kind of window. Deterministic for a seed on one machine. The shipped model
is three runs of this script, a base run and two fine-tuning phases, chained by
`python scripts/train_builtin_recipe.py configs/builtin_recipe_fast.json --out DIR`.

Experimental (`--paired-weight W > 0`): every window comes with a counterfactual
copy in which one enhancer (or, half the time, every enhancer) is shuffled and
the truth recomputed, and W x the MSE of the predicted expression difference
between window and copy (over that difference's variance) is added. The
difference can only come from positions away from the promoter, so this term
trains the long-range path alone: the freshly initialised model's sensitivity
beyond 50 bp is ~1e-5 of the local one (scripts/sensitivity_by_distance.py), and
without the pairs the model never learned to read enhancers.

Curriculum (`--stage STEPS:LENGTH:LO-HI`, repeatable; usually with `--init-from` a
model trained by the plain recipe): each stage trains on paired windows of LENGTH
bp whose distal promoter-enhancer pairs lie LO-HI bp apart, interleaved with plain
short batches (`--short-every`), so that the distance over which enhancers are read
grows step by step instead of being asked for at 30 kb at once. Each stage but the
last is also saved as DIR/stage-K.

Grammar: `--affinity-scale` sets how strongly a site's bases grade its effect
(pgf.sim.grammar; 0 is the all-or-nothing grammar of the base and curriculum phases).
`--site-sharpness LO-HI` and `--partial-sites P` plant weaker and half-random sites in
training windows (tried for the graded model, not used by it).

Variant effects (`--snv-copies K`): plain short batches come with copies carrying K
random SNVs (at planted sites and near elements; the truth recomputed by
pgf.sim.grammar.rescore_elements), and `--snv-weight` x the per-channel MSE of the
predicted window-minus-copy difference is added, so that the model's response to a
single base follows the truth's graded one (the evaluation's Taylor-vs-exact ISM asks
for that); validation reports the Pearson r of those differences. Tried, not used by the
shipped model (bench/results/builtin_variant_training_cpu.json).

Input gradients (`--taylor-weight W`): plain short batches also ask the model's
first-order SNV effects on a 200-bp readout around an element (g[alt] - g[ref], g the
input gradient) to match the truth's (pgf.sim.grammar.first_order_snv_effects): the
simulator knows the derivative of its truth, so the gradient is trained directly
(Sobolev training, by double backward): attributions are gradients, and a model whose
gradient follows the truth's gives first-order ISM estimates that track exact ISM as
the truth's own do. Alone it raised Taylor-ISM on simulated windows (0.746 -> 0.799)
but lowered 200-kb expression Pearson (0.783 -> 0.639) (same file); the shipped model's
last phase uses it between paired 64-kb windows, which keep long-range expression.

    python scripts/train_builtin.py            # a base run with the defaults (1,500 steps)
    python scripts/train_builtin.py --out DIR --steps 20 --long-start 10   # quick try

Trains on the GPU when torch sees one (`--device auto`, the default; `--device cpu` to
keep to the CPU); simulating the data stays on the CPU (`--threads`).

Writes DIR/config.json, DIR/model.safetensors and DIR/training_log.json.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

# Large tensors in 2 MB pages (read by torch's CPU allocator, so set before importing
# torch); see keep_freed_memory.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import numpy as np
import torch

from pgf.io.onehot import one_hot
from pgf.models.registry import load_checkpoint, save_checkpoint
from pgf.models.track_ssm import TrackSSM, TrackSSMConfig
from pgf.sim.grammar import (
    CHANNELS, Grammar, Layout, SimulatedChromosome, first_order_snv_effects, promoter_activities, render_signals,
    rescore_elements, simulate_chromosome,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "pgf_cli" / "pgf" / "models" / "builtin"

def keep_freed_memory() -> None:
    """Make glibc malloc keep freed memory for reuse instead of returning it to the OS.

    A training step allocates and frees a few GB of activations; on a VM the page faults
    of fresh memory took over half of a 32-kb step (measured on the 2-core dev VM, one
    thread: 9.2 s per step, 5-7 s of it system time; with this, 4.0 s and no system time
    after a few steps). No effect, and no error, where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX: large blocks from the heap, not fresh mmaps
        libc.mallopt(-1, 2**30)  # M_TRIM_THRESHOLD: keep up to 1 GiB free at the heap top
    except (OSError, AttributeError):
        pass


def short_layout(spacing: float = 1.0) -> Layout:
    """Dense layout of the short windows; `spacing` scales the mean distances between elements."""
    return Layout(
        promoter_every=1_000 * spacing, enhancer_every=1_500 * spacing, insulator_every=3_000 * spacing,
        silencer_every=4_000 * spacing, silencer_near_promoter=0.3, distal_pairs=1, distal_range=(300, 1_500),
        min_gap=100,
    )


def long_layout(pair_max: int) -> Layout:
    """Long windows: many promoters reading enhancers at all distances (sparse enough
    that the enhancer sum is rarely saturated), distal pairs 5 kb to `pair_max` apart."""
    return Layout(
        promoter_every=5_000, enhancer_every=15_000, insulator_every=15_000, silencer_every=40_000,
        silencer_near_promoter=0.25, distal_pairs=2, distal_range=(5_000, pair_max), min_gap=200,
    )


def model_config(context_length: int, n_layer: int = 3, d_conv: int = 8) -> TrackSSMConfig:
    return TrackSSMConfig(
        d_model=32, n_layer=n_layer, d_state=8, d_conv=d_conv, expand=2,
        bidirectional=True, bidirectional_strategy="add", bidirectional_weight_tie=True,
        channels=CHANNELS, context_length=context_length,
    )


def build_model(config: TrackSSMConfig, seed: int, dt_min: float = 1e-5, bc_scale: float = 1.0) -> TrackSSM:
    """Mamba init, but step sizes from `dt_min` (1e-5: memories of ~100 kb) to 0.1 so
    that some channels start able to carry an enhancer's signal far, and the B and C
    rows of x_proj scaled by `bc_scale` (a stronger state path at the start)."""
    torch.manual_seed(seed)
    model = TrackSSM(config)
    for layer in model.layers:
        for mixer in (layer.mixer.mamba_fwd, layer.mixer.mamba_rev):
            mixer.reset_ssm_parameters(dt_min=dt_min, dt_max=0.1, dt_floor=min(dt_min, 1e-5))
            with torch.no_grad():
                mixer.x_proj.weight[mixer.dt_rank :] *= bc_scale
    return model


def with_trained_context(model: TrackSSM, length: int) -> None:
    """Raise the context length the model's config states (what pgf warns beyond) to
    `length`, the longest window just trained on, unless an earlier phase trained longer."""
    if (model.config.context_length or 0) < length:
        model.config = replace(model.config, context_length=length)


LONG_LAYOUTS = ("dense", "genome")  # element layouts of long curriculum stages (stage_layout)


def genome_layout(length: int) -> Layout:
    """The sample genome's layout (the simulator's defaults: sparse elements, the
    spacing of real chromosomes), with a distal pair per ~40 kb of window."""
    return Layout(distal_pairs=max(1, round(length / 40_000)))


def stage_layout(length: int, pair_range: tuple[int, int], long_kind: str = "dense") -> Layout:
    """Layout of a curriculum stage: the short layout for windows up to 4 kb, else the
    dense long layout or (`long_kind` "genome") genome_layout, with its distal pairs
    `pair_range` bp apart."""
    if length <= 4_096:
        base = short_layout()
    else:
        base = genome_layout(length) if long_kind == "genome" else long_layout(pair_range[1])
    return replace(base, distal_range=pair_range)


def parse_stage(text: str) -> tuple[int, int, tuple[int, int], str | None]:
    """'STEPS:LENGTH:LO-HI[:LAYOUT]' -> (steps, window length, (lo, hi) distal pair
    distances, layout of a long stage: "dense", "genome" or None for --stage-layout)."""
    try:
        steps, length, span, *layout = text.split(":")
        lo, hi = span.split("-")
        stage = int(steps), int(length), (int(lo), int(hi)), (layout[0] if layout else None)
        if len(layout) > 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"stage {text!r} is not STEPS:LENGTH:LO-HI[:dense|genome] (e.g. 200:8192:1500-6000)") from None
    if not (stage[0] > 0 and 0 < stage[2][0] < stage[2][1] < stage[1]):
        raise argparse.ArgumentTypeError(f"stage {text!r}: need STEPS > 0 and 0 < LO < HI < LENGTH")
    if stage[3] is not None and stage[3] not in LONG_LAYOUTS:
        raise argparse.ArgumentTypeError(f"stage {text!r}: the layout is one of {', '.join(LONG_LAYOUTS)}, not {stage[3]!r}")
    return stage


def parse_sharpness(text: str) -> tuple[float, float]:
    """'LO-HI' (or one number) -> the range of sharpness planted instances are drawn with."""
    try:
        low, _, high = text.partition("-")
        sharpness = float(low), float(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"site sharpness {text!r} is not LO-HI (e.g. 1-3)") from None
    if not 0 < sharpness[0] <= sharpness[1]:
        raise argparse.ArgumentTypeError(f"site sharpness {text!r}: need 0 < LO <= HI")
    return sharpness


def make_batch(
    rng: np.random.Generator, length: int, batch: int, layout: Layout, grammar: Grammar = Grammar()
) -> tuple[torch.Tensor, torch.Tensor]:
    """(onehot (b, L, 4), signals (b, L, channels)) from `batch` freshly simulated chromosomes."""
    onehots, signals = [], []
    for _ in range(batch):
        chromosome = simulate_chromosome("train", length, rng, layout, grammar)
        onehots.append(torch.from_numpy(one_hot(chromosome.sequence)))
        signals.append(torch.from_numpy(chromosome.signals.T.copy()))
    return torch.stack(onehots).float(), torch.stack(signals).float()


def without_enhancers(
    chromosome: SimulatedChromosome, rng: np.random.Generator, indices: list[int] | None = None,
    grammar: Grammar = Grammar(),
) -> tuple[str, np.ndarray]:
    """(sequence, signals (channels, L)) of `chromosome` with the enhancers at `indices`
    of its elements (default: one at random or, half the time, all of them) shuffled in
    place, and the truth recomputed without them."""
    enhancers = [i for i, e in enumerate(chromosome.elements) if e.role == "enhancer"]
    if indices is not None:
        dropped = set(indices)
    elif enhancers:
        dropped = {int(rng.choice(enhancers))} if rng.random() < 0.5 else set(enhancers)
    else:
        dropped = set()
    bases = list(chromosome.sequence)
    for index in sorted(dropped):
        element = chromosome.elements[index]
        segment = bases[element.start : element.end]
        rng.shuffle(segment)
        bases[element.start : element.end] = segment
    kept = [replace(e) for i, e in enumerate(chromosome.elements) if i not in dropped]
    promoter_activities(kept, grammar)
    return "".join(bases), render_signals(len(bases), kept, grammar)


def _batch_with_copies(
    rng: np.random.Generator, length: int, pairs: int, layout: Layout, grammar: Grammar,
    make_copy: Callable[[SimulatedChromosome], tuple[str, np.ndarray]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like make_batch with 2 * `pairs` windows: `pairs` chromosomes, then their copies
    (`make_copy`: sequence and signals (channels, L)) in the same order."""
    chromosomes = [simulate_chromosome("train", length, rng, layout, grammar) for _ in range(pairs)]
    copies = [make_copy(c) for c in chromosomes]
    sequences = [c.sequence for c in chromosomes] + [s for s, _ in copies]
    signals = [c.signals for c in chromosomes] + [t for _, t in copies]
    onehot = torch.from_numpy(np.stack([one_hot(s) for s in sequences])).float()
    return onehot, torch.from_numpy(np.stack([t.T for t in signals])).float()


def make_paired_batch(
    rng: np.random.Generator, length: int, pairs: int, layout: Layout, grammar: Grammar = Grammar()
) -> tuple[torch.Tensor, torch.Tensor]:
    """2 * `pairs` windows: `pairs` chromosomes, then their counterfactual copies
    (without_enhancers) in the same order."""
    return _batch_with_copies(rng, length, pairs, layout, grammar, lambda c: without_enhancers(c, rng, grammar=grammar))


def with_snvs(chromosome: SimulatedChromosome, rng: np.random.Generator, count: int, grammar: Grammar = Grammar()
              ) -> tuple[str, np.ndarray]:
    """(sequence, signals (channels, L)) of `chromosome` with `count` random SNVs, the truth
    recomputed (rescore_elements): each SNV hits a planted site's base half the time, else a
    base within 150 bp of an element (where a model's gain-of-function errors matter)."""
    bases = list(chromosome.sequence)
    elements = chromosome.elements
    site_bases = [p for e in elements for s in e.sites for p in range(s.start, s.end)]
    for _ in range(count):
        if site_bases and rng.random() < 0.5:
            position = int(rng.choice(site_bases))
        elif elements:
            element = elements[int(rng.integers(len(elements)))]
            position = int(rng.integers(max(0, element.start - 150), min(len(bases), element.end + 150)))
        else:
            position = int(rng.integers(len(bases)))
        bases[position] = str(rng.choice([b for b in "ACGT" if b != bases[position]]))
    sequence = "".join(bases)
    return sequence, render_signals(len(bases), rescore_elements(elements, sequence, grammar), grammar)


def make_snv_batch(
    rng: np.random.Generator, length: int, pairs: int, snvs: int, layout: Layout, grammar: Grammar = Grammar()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like make_paired_batch, the copies carrying `snvs` SNVs each (with_snvs)."""
    return _batch_with_copies(rng, length, pairs, layout, grammar, lambda c: with_snvs(c, rng, snvs, grammar))


def make_taylor_batch(
    rng: np.random.Generator, length: int, batch: int, layout: Layout, grammar: Grammar = Grammar()
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """make_batch plus, per window, a 200-bp readout around a random element (its expression
    for a promoter, else its accessibility) as a (b, L, channels) 0/1 mask, and the truth's
    first-order effect of every SNV on that readout (b, L, 4; first_order_snv_effects)."""
    onehots, signals, masks, effects = [], [], [], []
    for _ in range(batch):
        chromosome = simulate_chromosome("train", length, rng, layout, grammar)
        elements = chromosome.elements
        if elements:
            element = elements[int(rng.integers(len(elements)))]
            centre, channel = element.centre, 0 if element.role == "promoter" else 1
        else:
            centre, channel = int(rng.integers(100, length - 100)), 1
        lo, hi = max(0, centre - 100), min(length, centre + 100)
        mask = np.zeros((length, len(CHANNELS)), dtype=np.float32)
        mask[lo:hi, channel] = 1
        onehots.append(one_hot(chromosome.sequence))
        signals.append(chromosome.signals.T)
        masks.append(mask)
        effects.append(first_order_snv_effects(elements, chromosome.sequence, grammar, channel, lo, hi))
    as_tensor = lambda arrays: torch.from_numpy(np.stack(arrays)).float()  # noqa: E731
    return as_tensor(onehots), as_tensor(signals), as_tensor(masks), as_tensor(effects)


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30))


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters live (training batches and validation inputs go there)."""
    return next(model.parameters()).device


def evaluate(model: TrackSSM, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """Per-channel Pearson r over all positions of the validation chromosomes."""
    with torch.no_grad():
        predictions = [model(x.to(model_device(model)))["track"].cpu() for x, _ in batches]
    return [
        pearson(torch.cat([p[..., c] for p in predictions]), torch.cat([y[..., c] for _, y in batches]))
        for c in range(len(CHANNELS))
    ]


@dataclass(frozen=True)
class WindowKind:
    """One kind of training window and the loss scales measured on a pilot sample of it."""

    length: int
    batch: int  # windows per step (paired kinds: half originals, half their copies)
    layout: Layout
    paired: bool
    scale: torch.Tensor  # per-channel variance of the truth
    difference_scale: torch.Tensor | None  # variance of the true expression difference of a pair
    grammar: Grammar
    snvs: int = 0  # > 0: paired with copies carrying this many SNVs (make_snv_batch) instead
    snv_difference_scale: torch.Tensor | None = None  # per-channel variance of the true SNV-copy difference
    taylor_scale: float = 0.0  # > 0: match the truth's first-order SNV effects (make_taylor_batch); their variance


def window_kind(
    rng: np.random.Generator, length: int, batch: int, layout: Layout, paired: bool, grammar: Grammar = Grammar()
) -> WindowKind:
    """A WindowKind whose loss scales come from ~32 kb (at least 4 windows) of pilot data."""
    pilot_windows = max(4, 32_768 // length)
    _, pilot = make_batch(rng, length, pilot_windows, layout, grammar)
    difference_scale = None
    if paired:
        _, pairs = make_paired_batch(rng, length, pilot_windows, layout, grammar)
        half = len(pairs) // 2
        difference_scale = (pairs[:half, :, 0] - pairs[half:, :, 0]).var().clamp_min(1e-6)
    return WindowKind(length, batch, layout, paired, pilot.flatten(0, 1).var(dim=0), difference_scale, grammar)


def with_snv_copies(rng: np.random.Generator, kind: WindowKind, snvs: int) -> WindowKind:
    """`kind` (unpaired) trained on windows and their copies with `snvs` SNVs each, the
    difference loss scaled by its variance on ~32 kb of pilot pairs."""
    pilot_pairs = max(4, 32_768 // kind.length)
    _, pairs = make_snv_batch(rng, kind.length, pilot_pairs, snvs, kind.layout, kind.grammar)
    difference = pairs[:pilot_pairs] - pairs[pilot_pairs:]
    return replace(kind, paired=False, snvs=snvs, snv_difference_scale=difference.flatten(0, 1).var(dim=0).clamp_min(1e-6))


def with_taylor_targets(rng: np.random.Generator, kind: WindowKind) -> WindowKind:
    """`kind` (unpaired) trained to match the truth's first-order SNV effects too, the
    term scaled by their variance on ~32 kb of pilot windows."""
    *_, effects = make_taylor_batch(rng, kind.length, max(4, 32_768 // kind.length), kind.layout, kind.grammar)
    return replace(kind, paired=False, taylor_scale=float(effects.var().clamp_min(1e-6)))


def step_loss(
    model: TrackSSM, kind: WindowKind, rng: np.random.Generator, paired_weight: float, snv_weight: float = 0.0,
    taylor_weight: float = 0.0,
) -> torch.Tensor:
    """Per-channel MSE over the channel's variance; for paired kinds plus `paired_weight`
    x the MSE of the predicted expression difference between windows and their copies;
    for SNV kinds plus `snv_weight` x the per-channel MSE of the predicted difference
    between windows and their SNV copies over its variance; for Taylor kinds plus
    `taylor_weight` x the MSE between the model's first-order SNV effects on each window's
    readout (g[alt] - g[ref], g its input gradient) and the truth's, over their variance
    (training through the input gradient: double backward)."""
    device = model_device(model)
    scale = kind.scale.to(device)
    if kind.taylor_scale:
        x, y, mask, effects = (t.to(device) for t in make_taylor_batch(rng, kind.length, kind.batch, kind.layout, kind.grammar))
        x.requires_grad_(taylor_weight > 0)
        prediction = model(x)["track"]
        loss = (((prediction - y) ** 2).mean(dim=(0, 1)) / scale).mean()
        if taylor_weight > 0:
            (gradient,) = torch.autograd.grad((prediction * mask).sum(), x, create_graph=True)
            model_effects = gradient - (gradient * x).sum(dim=-1, keepdim=True)
            loss = loss + taylor_weight * ((model_effects - effects) ** 2).mean() / kind.taylor_scale
        return loss
    if kind.paired:
        x, y = make_paired_batch(rng, kind.length, max(1, kind.batch // 2), kind.layout, kind.grammar)
    elif kind.snvs:
        x, y = make_snv_batch(rng, kind.length, max(1, kind.batch // 2), kind.snvs, kind.layout, kind.grammar)
    else:
        x, y = make_batch(rng, kind.length, kind.batch, kind.layout, kind.grammar)
    x, y = x.to(device), y.to(device)
    prediction = model(x)["track"]
    loss = (((prediction - y) ** 2).mean(dim=(0, 1)) / scale).mean()
    if kind.paired and paired_weight > 0:
        half = len(x) // 2
        difference_error = (prediction[:half, :, 0] - prediction[half:, :, 0]) - (y[:half, :, 0] - y[half:, :, 0])
        loss = loss + paired_weight * (difference_error**2).mean() / kind.difference_scale.to(device)
    if kind.snvs and snv_weight > 0:
        half = len(x) // 2
        difference_error = (prediction[:half] - prediction[half:]) - (y[:half] - y[half:])
        loss = loss + snv_weight * ((difference_error**2).mean(dim=(0, 1)) / kind.snv_difference_scale.to(device)).mean()
    return loss


def _pair_differences(
    model: TrackSSM, pairs: list[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true window-minus-copy differences (pairs, L, channels) over batches
    of windows followed by their copies."""
    predicted, true = [], []
    with torch.no_grad():
        for x, y in pairs:
            track = model(x.to(model_device(model)))["track"].cpu()
            half = len(x) // 2
            predicted.append(track[:half] - track[half:])
            true.append(y[:half] - y[half:])
    return torch.cat(predicted), torch.cat(true)


def evaluate_pairs(model: TrackSSM, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Pearson r of predicted vs true expression difference between windows and their
    enhancer-shuffled copies: how much of the enhancers' effect the model reproduces."""
    predicted, true = _pair_differences(model, pairs)
    return pearson(predicted[..., 0], true[..., 0])


def evaluate_snv_pairs(model: TrackSSM, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """Per-channel Pearson r of predicted vs true differences between windows and their
    SNV copies: how well the model's variant effects follow the truth's."""
    predicted, true = _pair_differences(model, pairs)
    return [pearson(predicted[..., c], true[..., c]) for c in range(len(CHANNELS))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--init-from", type=Path, help="start from this TrackSSM checkpoint instead of a fresh init "
                        "(its architecture is kept: --layers, --d-conv, --dt-min and --bc-scale then do nothing)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--d-conv", type=int, default=8)
    parser.add_argument("--dt-min", type=float, default=1e-5)
    parser.add_argument("--bc-scale", type=float, default=1.0, help="scale of x_proj's B and C rows at initialisation")
    parser.add_argument("--paired-weight", type=float, default=0.0,
                        help="weight of the counterfactual-pair loss (0: no pairs, as in the base run)")
    parser.add_argument("--pair-ramp", type=int, default=0, help="steps over which the pair weight rises from 0")
    parser.add_argument("--stage", type=parse_stage, action="append", default=[], metavar="STEPS:LENGTH:LO-HI[:LAYOUT]",
                        help="curriculum stage (repeatable; replaces --steps and the short/long schedule): "
                             "STEPS steps of paired windows of LENGTH bp whose distal pairs are LO-HI bp apart, "
                             "laid out as LAYOUT (dense or genome; default --stage-layout)")
    parser.add_argument("--stage-layout", choices=LONG_LAYOUTS, default="dense",
                        help="element layout of curriculum stages longer than 4 kb that name none: dense (a promoter per 5 kb) "
                             "or genome (the sample genome's sparse spacing, a promoter per 25 kb)")
    parser.add_argument("--short-every", type=int, default=2,
                        help="in curriculum stages, one step in this many is a plain short batch")
    parser.add_argument("--short-length", type=int, default=2048)
    parser.add_argument("--short-batch", type=int, default=4)
    parser.add_argument("--short-spacing", type=float, default=1.0, help="scale of the short windows' element spacing")
    parser.add_argument("--long-start", type=int, default=200)
    parser.add_argument("--long-every", type=int, default=3)
    parser.add_argument("--long-length", type=int, default=32768)
    parser.add_argument("--long-pair-max", type=int, default=30_000)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--timescale-lr-scale", type=float, default=1.0,
                        help="learning rate multiplier of dt_proj and A_log")
    parser.add_argument("--affinity-scale", type=float, default=Grammar().affinity_scale,
                        help="the simulator's site affinity exp(scale x log-likelihood ratio to the consensus); "
                             "0: every planted site counts fully (the grammar of the base and curriculum phases)")
    parser.add_argument("--site-sharpness", type=parse_sharpness, default=(3.0, 3.0), metavar="LO-HI",
                        help="training sites are drawn from their matrix raised to a sharpness in this range "
                             "(3: strong sites, as in the sample genome; 1-3 adds weak and partial sites, whose "
                             "graded effects teach how much each base of a motif matters); validation keeps 3")
    parser.add_argument("--partial-sites", type=float, default=0.0, metavar="P",
                        help="chance that a training site has half its bases redrawn at random (a weak, partial "
                             "site); validation keeps 0")
    parser.add_argument("--snv-copies", type=int, default=0, metavar="K",
                        help="plain short batches come with copies carrying K random SNVs (at planted sites and "
                             "near elements, the truth recomputed), and --snv-weight x the MSE of the predicted "
                             "difference is added: it trains the model's variant effects (0: off)")
    parser.add_argument("--snv-weight", type=float, default=1.0, help="weight of the SNV-copy difference loss")
    parser.add_argument("--taylor-weight", type=float, default=0.0, metavar="W",
                        help="plain short batches also match the truth's first-order effect of every SNV on a "
                             "200-bp readout around an element (the model's input gradient, trained by double "
                             "backward: 2.5 s against 0.9 s for a plain 4 x 2-kb step on the 2-core VM), with weight W (0: off)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (also for simulating data on a GPU run)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the model trains: auto = the GPU when torch sees one (not bit-identical to a CPU run)")
    parser.add_argument("--validate-every", type=int, default=100)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    keep_freed_memory()
    torch.set_flush_denormal(True)  # stiff decays underflow; denormal arithmetic is ~100x slower on x86
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU (install a CUDA build of torch, or use --device cpu)")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    if args.init_from is not None:
        torch.manual_seed(args.seed)
        model = load_checkpoint(args.init_from).model.float().train()
        if not isinstance(model, TrackSSM):
            parser.error(f"--init-from {args.init_from}: not a TrackSSM checkpoint")
    else:
        config = model_config(context_length=args.long_length, n_layer=args.layers, d_conv=args.d_conv)
        model = build_model(config, args.seed, dt_min=args.dt_min, bc_scale=args.bc_scale)
    rng = np.random.default_rng(args.seed)
    validation_rng = np.random.default_rng(args.seed + 1)
    grammar = Grammar(affinity_scale=args.affinity_scale)
    validation = [make_batch(validation_rng, args.long_length, 1, long_layout(args.long_pair_max), grammar)
                  for _ in range(3)]
    validation_pairs = [make_paired_batch(validation_rng, args.long_length, 1, long_layout(args.long_pair_max), grammar)
                        for _ in range(3)]
    # drawn from their own generator so that adding them leaves every other draw unchanged
    snv_rng = np.random.default_rng(args.seed + 3)
    validation_snvs = [make_snv_batch(snv_rng, args.short_length, 4, 8, short_layout(args.short_spacing), grammar)
                       for _ in range(4)]
    # loss = per-channel MSE / the channel's variance in that kind of window, so that the
    # sparse long windows weigh as much as the dense short ones
    pilot_rng = np.random.default_rng(args.seed + 2)
    paired = args.paired_weight > 0
    sharp = {"site_sharpness": tuple(args.site_sharpness), "partial_sites": args.partial_sites}
    short = window_kind(pilot_rng, args.short_length, args.short_batch,
                        replace(short_layout(args.short_spacing), **sharp), paired, grammar)
    if args.snv_copies and args.taylor_weight:
        parser.error("--snv-copies and --taylor-weight both change the plain short batches: choose one")
    if args.snv_copies:
        short = with_snv_copies(snv_rng, short, args.snv_copies)
    if args.taylor_weight:
        short = with_taylor_targets(snv_rng, short)
    if args.stage:
        plain_short = replace(short, paired=False)  # SNV copies or Taylor targets, if any, stay
        stages = [window_kind(pilot_rng, length, max(2, args.short_length * args.short_batch // length),
                              replace(stage_layout(length, span, layout or args.stage_layout), **sharp), True, grammar)
                  for _, length, span, layout in args.stage]
        schedule_kinds = []
        for (steps, *_), kind in zip(args.stage, stages):
            schedule_kinds += [plain_short if i % args.short_every == args.short_every - 1 else kind for i in range(steps)]
    else:
        long = window_kind(pilot_rng, args.long_length, 1, replace(long_layout(args.long_pair_max), **sharp), paired, grammar)
        schedule_kinds = [
            long if step >= args.long_start and (step - args.long_start) % args.long_every == args.long_every - 1 else short
            for step in range(args.steps)
        ]

    model = model.to(device)
    # step sizes (dt_proj) and decay rates (A_log) can be given a larger learning rate: a
    # channel that carries an enhancer tens of kb must learn to write (dt spike) at enhancers only
    timescale, rest = [], []
    for name, parameter in model.named_parameters():
        (timescale if ".dt_proj." in name or name.endswith(".A_log") else rest).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": rest}, {"params": timescale, "lr": args.lr * args.timescale_lr_scale}], lr=args.lr, weight_decay=0.0
    )
    total = len(schedule_kinds)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * step / total))
    )
    log: list[dict] = []
    started = time.perf_counter()
    stage_ends = np.cumsum([s[0] for s in args.stage]).tolist()
    for step, kind in enumerate(schedule_kinds):
        weight = args.paired_weight * min(1.0, (step + 1) / args.pair_ramp) if args.pair_ramp else args.paired_weight
        loss = step_loss(model, kind, rng, weight, args.snv_weight, args.taylor_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        entry = {"step": step, "window": kind.length, "loss": round(loss.item(), 5),
                 "seconds": round(time.perf_counter() - started, 1)}
        if step % args.validate_every == args.validate_every - 1 or step == total - 1:
            entry["validation_pearson"] = [round(r, 4) for r in evaluate(model, validation)]
            entry["validation_pair_difference_pearson"] = round(evaluate_pairs(model, validation_pairs), 4)
            entry["validation_snv_difference_pearson"] = [round(r, 4) for r in evaluate_snv_pairs(model, validation_snvs)]
        log.append(entry)
        if "validation_pearson" in entry or step % 20 == 0:
            print(json.dumps(entry), flush=True)
        if step + 1 in stage_ends[:-1]:
            save_checkpoint(model, args.out / f"stage-{stage_ends.index(step + 1) + 1}")

    with_trained_context(model, max(kind.length for kind in schedule_kinds))
    save_checkpoint(model, args.out)
    summary = {
        "command": " ".join(["python", "scripts/train_builtin.py", *sys.argv[1:]]),
        "seed": args.seed,
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "torch": torch.__version__,
        "threads": args.threads,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "train_seconds": round(time.perf_counter() - started, 1),
        "final_validation_pearson": dict(zip(CHANNELS, log[-1]["validation_pearson"])),
        "final_validation_pair_difference_pearson": log[-1]["validation_pair_difference_pearson"],
        "final_validation_snv_difference_pearson": dict(zip(CHANNELS, log[-1]["validation_snv_difference_pearson"])),
        "log": log,
    }
    (args.out / "training_log.json").write_text(json.dumps(summary) + "\n")
    print(f"saved {args.out} after {summary['train_seconds']} s; validation Pearson {summary['final_validation_pearson']}")


if __name__ == "__main__":
    main()
