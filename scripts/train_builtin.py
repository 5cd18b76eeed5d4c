"""Train one phase of pgf's built-in model on simulated chromosomes (never the sample genome).

The shipped model is three runs of this module chained by scripts/train_builtin_recipe.py
(configs/builtin_recipe_fast.json): a base run, then two fine-tuning phases started from the
previous phase's checkpoint (`--init-from`). Every training window is a freshly simulated
chromosome (pgf.sim.grammar, seeds from --seed upwards), planted more densely than the sample
genome so that each window teaches something. Loss: per-channel MSE over the channel's
variance in that kind of window, so sparse long windows weigh as much as dense short ones.

- Base run (`--steps`): short windows throughout; from `--long-start` on, one step in
  `--long-every` is a long window with promoter-enhancer pairs up to `--long-pair-max` bp apart.
- Curriculum (`--stage STEPS:LENGTH:LO-HI[:genome]`, repeatable, replaces the base schedule):
  paired windows of LENGTH bp whose distal pairs lie LO-HI bp apart, one step in
  `--short-every` a plain short batch, so the distance over which enhancers are read grows
  stage by stage. A paired window comes with a copy in which one enhancer (half the time every
  enhancer) is shuffled and the truth recomputed; `--paired-weight` x the MSE of the predicted
  expression difference between the two (over its variance) is added. Only the path from the
  enhancers to the promoter can produce that difference, so this term trains the long-range path.
- Input gradients (`--taylor-weight W`): plain short batches also match the truth's
  first-order SNV effects on a 200-bp readout around an element (g[alt] - g[ref], g the
  model's input gradient; pgf.sim.grammar.first_order_snv_effects), trained by double
  backward, so that first-order ISM estimates from the model's gradients track exact ISM.

    python -m scripts.train_builtin --out DIR --steps 20 --long-start 10   # a quick try (repo root)

Deterministic for a seed on one machine. Trains on the GPU when torch sees one (`--device
auto`); simulating the data stays on the CPU (`--threads`). Writes DIR/config.json,
DIR/model.safetensors and DIR/training_log.json. Imports nothing from its sibling scripts, so
`python scripts/train_builtin.py` (the commands in the shipped training log) runs too.
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
Batch = tuple[torch.Tensor, torch.Tensor]  # (onehot (b, L, 4), signals (b, L, channels))


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


def model_config(context_length: int, n_layer: int = 3) -> TrackSSMConfig:
    """The built-in architecture: a small weight-tied BiMamba with `n_layer` layers."""
    return TrackSSMConfig(
        d_model=32, n_layer=n_layer, d_state=8, d_conv=8, expand=2,
        bidirectional=True, bidirectional_strategy="add", bidirectional_weight_tie=True,
        channels=CHANNELS, context_length=context_length,
    )


def build_model(config: TrackSSMConfig, seed: int) -> TrackSSM:
    """Mamba init, but step sizes from 1e-5 (memories of ~100 kb) to 0.1, so that some
    channels start able to carry an enhancer's signal far."""
    torch.manual_seed(seed)
    model = TrackSSM(config)
    for layer in model.layers:
        for mixer in (layer.mixer.mamba_fwd, layer.mixer.mamba_rev):
            mixer.reset_ssm_parameters(dt_min=1e-5, dt_max=0.1, dt_floor=1e-5)
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


def stage_layout(length: int, pair_range: tuple[int, int], long_kind: str | None = None) -> Layout:
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
    distances, layout of a long stage: "dense", "genome" or None for dense)."""
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


def make_batch(
    rng: np.random.Generator, length: int, batch: int, layout: Layout, grammar: Grammar = Grammar()
) -> Batch:
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
) -> Batch:
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
) -> Batch:
    """2 * `pairs` windows: `pairs` chromosomes, then their counterfactual copies
    (without_enhancers) in the same order."""
    return _batch_with_copies(rng, length, pairs, layout, grammar, lambda c: without_enhancers(c, rng, grammar=grammar))


def with_snvs(chromosome: SimulatedChromosome, rng: np.random.Generator, count: int, grammar: Grammar = Grammar()
              ) -> tuple[str, np.ndarray]:
    """(sequence, signals (channels, L)) of `chromosome` with `count` random SNVs, the truth
    recomputed (rescore_elements): each SNV hits a planted site's base half the time, else a
    base within 150 bp of an element (where a model's gain-of-function errors matter). The
    validation measures how well the model's variant effects follow the truth's on these."""
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
) -> Batch:
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
    """Pearson r of two tensors' values, in float64."""
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30))


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters live (training batches and validation inputs go there)."""
    return next(model.parameters()).device


def evaluate(model: TrackSSM, batches: list[Batch]) -> list[float]:
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


def with_taylor_targets(rng: np.random.Generator, kind: WindowKind) -> WindowKind:
    """`kind` (unpaired) trained to match the truth's first-order SNV effects too, the
    term scaled by their variance on ~32 kb of pilot windows."""
    *_, effects = make_taylor_batch(rng, kind.length, max(4, 32_768 // kind.length), kind.layout, kind.grammar)
    return replace(kind, paired=False, taylor_scale=float(effects.var().clamp_min(1e-6)))


def _track_loss(prediction: torch.Tensor, y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-channel MSE over the channel's variance, averaged over channels."""
    return (((prediction - y) ** 2).mean(dim=(0, 1)) / scale).mean()


def _taylor_loss(model: TrackSSM, kind: WindowKind, rng: np.random.Generator, taylor_weight: float) -> torch.Tensor:
    """Track loss plus `taylor_weight` x the MSE between the model's first-order SNV effects
    on each window's readout (g[alt] - g[ref], g its input gradient) and the truth's, over
    their variance (training through the input gradient: double backward)."""
    device = model_device(model)
    batch = make_taylor_batch(rng, kind.length, kind.batch, kind.layout, kind.grammar)
    x, y, mask, effects = (t.to(device) for t in batch)
    x.requires_grad_(taylor_weight > 0)
    prediction = model(x)["track"]
    loss = _track_loss(prediction, y, kind.scale.to(device))
    if taylor_weight > 0:
        (gradient,) = torch.autograd.grad((prediction * mask).sum(), x, create_graph=True)
        model_effects = gradient - (gradient * x).sum(dim=-1, keepdim=True)
        loss = loss + taylor_weight * ((model_effects - effects) ** 2).mean() / kind.taylor_scale
    return loss


def step_loss(
    model: TrackSSM, kind: WindowKind, rng: np.random.Generator, paired_weight: float, taylor_weight: float = 0.0
) -> torch.Tensor:
    """The loss of one training step on a fresh batch of `kind`: the track loss; for paired
    kinds plus `paired_weight` x the MSE of the predicted expression difference between
    windows and their copies over its variance; for Taylor kinds see _taylor_loss."""
    if kind.taylor_scale:
        return _taylor_loss(model, kind, rng, taylor_weight)
    device = model_device(model)
    if kind.paired:
        x, y = make_paired_batch(rng, kind.length, max(1, kind.batch // 2), kind.layout, kind.grammar)
    else:
        x, y = make_batch(rng, kind.length, kind.batch, kind.layout, kind.grammar)
    x, y = x.to(device), y.to(device)
    prediction = model(x)["track"]
    loss = _track_loss(prediction, y, kind.scale.to(device))
    if kind.paired and paired_weight > 0:
        half = len(x) // 2
        difference_error = (prediction[:half, :, 0] - prediction[half:, :, 0]) - (y[:half, :, 0] - y[half:, :, 0])
        loss = loss + paired_weight * (difference_error**2).mean() / kind.difference_scale.to(device)
    return loss


def _pair_differences(
    model: TrackSSM, pairs: list[Batch]
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


def evaluate_pairs(model: TrackSSM, pairs: list[Batch]) -> float:
    """Pearson r of predicted vs true expression difference between windows and their
    enhancer-shuffled copies: how much of the enhancers' effect the model reproduces."""
    predicted, true = _pair_differences(model, pairs)
    return pearson(predicted[..., 0], true[..., 0])


def evaluate_snv_pairs(model: TrackSSM, pairs: list[Batch]) -> list[float]:
    """Per-channel Pearson r of predicted vs true differences between windows and their
    SNV copies: how well the model's variant effects follow the truth's."""
    predicted, true = _pair_differences(model, pairs)
    return [pearson(predicted[..., c], true[..., c]) for c in range(len(CHANNELS))]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags of a phase (configs/builtin_recipe_fast.json sets them per phase)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--init-from", type=Path, help="start from this TrackSSM checkpoint (its architecture is kept)")
    parser.add_argument("--steps", type=int, default=1500, help="steps of the base schedule (without --stage)")
    parser.add_argument("--layers", type=int, default=3, help="layers of a fresh model")
    parser.add_argument("--paired-weight", type=float, default=0.0,
                        help="weight of the counterfactual-pair loss (0: no pairs, as in the base run)")
    parser.add_argument("--pair-ramp", type=int, default=0, help="steps over which the pair weight rises from 0")
    parser.add_argument("--stage", type=parse_stage, action="append", default=[], metavar="STEPS:LENGTH:LO-HI[:LAYOUT]",
                        help="curriculum stage (repeatable; replaces --steps and the short/long schedule): "
                             "STEPS steps of paired windows of LENGTH bp whose distal pairs are LO-HI bp apart, "
                             "laid out as LAYOUT (dense, the default, or genome: the sample genome's sparse spacing)")
    parser.add_argument("--short-every", type=int, default=2,
                        help="in curriculum stages, one step in this many is a plain short batch")
    parser.add_argument("--short-length", type=int, default=2048)
    parser.add_argument("--short-batch", type=int, default=4)
    parser.add_argument("--long-start", type=int, default=200)
    parser.add_argument("--long-every", type=int, default=3)
    parser.add_argument("--long-length", type=int, default=32768)
    parser.add_argument("--long-pair-max", type=int, default=30_000)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--timescale-lr-scale", type=float, default=1.0,
                        help="learning rate multiplier of dt_proj and A_log")
    parser.add_argument("--taylor-weight", type=float, default=0.0, metavar="W",
                        help="plain short batches also match the truth's first-order effect of every SNV on a "
                             "200-bp readout around an element (the model's input gradient, trained by double "
                             "backward), with weight W (0: off)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (also for simulating data on a GPU run)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the model trains: auto = the GPU when torch sees one (not bit-identical to a CPU run)")
    parser.add_argument("--validate-every", type=int, default=100)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU (install a CUDA build of torch, or use --device cpu)")
    return args


def training_device(choice: str) -> torch.device:
    """The device for --device `choice` (auto: the GPU when torch sees one)."""
    return torch.device("cuda" if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()) else "cpu")


def initial_model(args: argparse.Namespace) -> TrackSSM:
    """The --init-from checkpoint, or a fresh model seeded by --seed."""
    if args.init_from is None:
        return build_model(model_config(context_length=args.long_length, n_layer=args.layers), args.seed)
    torch.manual_seed(args.seed)
    model = load_checkpoint(args.init_from).model.float().train()
    if not isinstance(model, TrackSSM):
        raise SystemExit(f"error: --init-from {args.init_from}: not a TrackSSM checkpoint")
    return model


@dataclass
class Validation:
    """Fixed validation sets: long windows, enhancer-shuffled pairs of them, and short SNV pairs."""

    windows: list[Batch]
    pairs: list[Batch]
    snv_pairs: list[Batch]

    def measure(self, model: TrackSSM) -> dict:
        """The log entry's validation fields."""
        return {
            "validation_pearson": [round(r, 4) for r in evaluate(model, self.windows)],
            "validation_pair_difference_pearson": round(evaluate_pairs(model, self.pairs), 4),
            "validation_snv_difference_pearson": [round(r, 4) for r in evaluate_snv_pairs(model, self.snv_pairs)],
        }


def validation_sets(args: argparse.Namespace, grammar: Grammar, snv_rng: np.random.Generator) -> Validation:
    """Validation data from --seed + 1 (windows, pairs) and `snv_rng` (SNV pairs)."""
    rng = np.random.default_rng(args.seed + 1)
    long = long_layout(args.long_pair_max)
    windows = [make_batch(rng, args.long_length, 1, long, grammar) for _ in range(3)]
    pairs = [make_paired_batch(rng, args.long_length, 1, long, grammar) for _ in range(3)]
    snv_pairs = [make_snv_batch(snv_rng, args.short_length, 4, 8, short_layout(), grammar) for _ in range(4)]
    return Validation(windows, pairs, snv_pairs)


def schedule(args: argparse.Namespace, grammar: Grammar, snv_rng: np.random.Generator) -> list[WindowKind]:
    """The window kind of every step, loss scales from pilot data drawn from --seed + 2
    (Taylor targets' from `snv_rng`): curriculum stages interleaved with plain short
    batches, or the base schedule of short windows and, from --long-start, long ones."""
    pilot_rng = np.random.default_rng(args.seed + 2)
    paired = args.paired_weight > 0
    short = window_kind(pilot_rng, args.short_length, args.short_batch, short_layout(), paired, grammar)
    if args.taylor_weight:
        short = with_taylor_targets(snv_rng, short)
    if not args.stage:
        long = window_kind(pilot_rng, args.long_length, 1, long_layout(args.long_pair_max), paired, grammar)
        every, start = args.long_every, args.long_start
        return [long if step >= start and (step - start) % every == every - 1 else short for step in range(args.steps)]
    plain_short = replace(short, paired=False)  # Taylor targets, if any, stay
    kinds = []
    for steps, length, span, layout in args.stage:
        batch = max(2, args.short_length * args.short_batch // length)
        stage = window_kind(pilot_rng, length, batch, stage_layout(length, span, layout), True, grammar)
        kinds += [plain_short if i % args.short_every == args.short_every - 1 else stage for i in range(steps)]
    return kinds


def optimizer_and_schedule(
    model: TrackSSM, args: argparse.Namespace, total: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with linear warm-up and cosine decay over `total` steps; step sizes (dt_proj)
    and decay rates (A_log) at --timescale-lr-scale x the learning rate (a channel that
    carries an enhancer tens of kb must learn to write, a dt spike, at enhancers only)."""
    timescale, rest = [], []
    for name, parameter in model.named_parameters():
        (timescale if ".dt_proj." in name or name.endswith(".A_log") else rest).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": rest}, {"params": timescale, "lr": args.lr * args.timescale_lr_scale}], lr=args.lr, weight_decay=0.0
    )
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * step / total))
    )
    return optimizer, lr_schedule


def train(
    model: TrackSSM, kinds: list[WindowKind], args: argparse.Namespace, validation: Validation
) -> list[dict]:
    """Run every step of `kinds` (batches drawn from --seed); the log, one entry per step."""
    rng = np.random.default_rng(args.seed)
    optimizer, lr_schedule = optimizer_and_schedule(model, args, len(kinds))
    log: list[dict] = []
    started = time.perf_counter()
    for step, kind in enumerate(kinds):
        weight = args.paired_weight * min(1.0, (step + 1) / args.pair_ramp) if args.pair_ramp else args.paired_weight
        loss = step_loss(model, kind, rng, weight, args.taylor_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        entry = {"step": step, "window": kind.length, "loss": round(loss.item(), 5),
                 "seconds": round(time.perf_counter() - started, 1)}
        if step % args.validate_every == args.validate_every - 1 or step == len(kinds) - 1:
            entry.update(validation.measure(model))
        log.append(entry)
        if "validation_pearson" in entry or step % 20 == 0:
            print(json.dumps(entry), flush=True)
    return log


def summary(args: argparse.Namespace, argv: list[str], device: torch.device, seconds: float, log: list[dict]) -> dict:
    """training_log.json: the command, arguments, environment, final validation and the log."""
    final = log[-1]
    return {
        "command": " ".join(["python -m scripts.train_builtin", *argv]),
        "seed": args.seed,
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "torch": torch.__version__,
        "threads": args.threads,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "train_seconds": round(seconds, 1),
        "final_validation_pearson": dict(zip(CHANNELS, final["validation_pearson"])),
        "final_validation_pair_difference_pearson": final["validation_pair_difference_pearson"],
        "final_validation_snv_difference_pearson": dict(zip(CHANNELS, final["validation_snv_difference_pearson"])),
        "log": log,
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    torch.set_flush_denormal(True)  # stiff decays underflow; denormal arithmetic is ~100x slower on x86
    device = training_device(args.device)
    model = initial_model(args)
    grammar = Grammar()
    # SNV validation pairs, then Taylor pilot targets, from their own generator, so that
    # neither changes any other draw
    snv_rng = np.random.default_rng(args.seed + 3)
    validation = validation_sets(args, grammar, snv_rng)
    kinds = schedule(args, grammar, snv_rng)
    model = model.to(device)
    started = time.perf_counter()
    log = train(model, kinds, args, validation)
    seconds = time.perf_counter() - started
    with_trained_context(model, max(kind.length for kind in kinds))
    save_checkpoint(model, args.out)
    result = summary(args, argv, device, seconds, log)
    (args.out / "training_log.json").write_text(json.dumps(result) + "\n")
    print(f"saved {args.out} after {result['train_seconds']} s; validation Pearson {result['final_validation_pearson']}")


if __name__ == "__main__":
    main()
