"""The training script's counterfactual pairs (enhancers shuffled in place or SNVs, truth
recomputed), its curriculum stages, Taylor targets and a tiny run."""

import numpy as np
import pytest
import torch

from pgf.sim.grammar import Layout, simulate_chromosome
from scripts import train_builtin as train


def _chromosome_with_a_pair(seed: int = 3):
    layout = Layout(promoter_every=1e9, enhancer_every=1e9, insulator_every=1e9, silencer_every=1e9,
                    silencer_near_promoter=0.0, distal_pairs=1, distal_range=(400, 800), min_gap=100)
    return simulate_chromosome("t", 3_000, np.random.default_rng(seed), layout)


def test_counterfactual_shuffles_only_enhancer_bases_and_silences_their_promoter():
    chromosome = _chromosome_with_a_pair()
    (enhancer,) = [e for e in chromosome.elements if e.role == "enhancer"]
    (promoter,) = [e for e in chromosome.elements if e.role == "promoter"]
    sequence, signals = train.without_enhancers(chromosome, np.random.default_rng(0))
    changed = np.flatnonzero(np.frombuffer(sequence.encode(), "u1") != np.frombuffer(chromosome.sequence.encode(), "u1"))
    assert changed.size > 0 and changed.min() >= enhancer.start and changed.max() < enhancer.end
    assert sorted(sequence[enhancer.start : enhancer.end]) == sorted(chromosome.sequence[enhancer.start : enhancer.end])
    # the promoter falls to its basal activity: 0.25 / (0.25 + 2 tanh(E / 2)) of before
    window = slice(promoter.start - 100, promoter.end + 100)
    ratio = signals[0, window].sum() / chromosome.signals[0, window].sum()
    assert 0.1 < ratio < 0.35, ratio
    assert np.allclose(signals[1, promoter.start : promoter.end], chromosome.signals[1, promoter.start : promoter.end])
    assert signals[1, enhancer.start : enhancer.end].max() < 1e-3  # the shuffled enhancer is no longer a site


def test_paired_batch_is_windows_then_their_copies():
    onehot, signals = train.make_paired_batch(np.random.default_rng(5), 2_048, 2, train.short_layout())
    assert onehot.shape == (4, 2_048, 4) and signals.shape == (4, 2_048, 2)
    assert torch.equal(onehot.sum(dim=(1, 2)), torch.full((4,), 2_048.0))
    # each copy differs from its window only where an enhancer was shuffled: same base counts
    assert torch.equal(onehot[:2].sum(dim=1), onehot[2:].sum(dim=1))
    assert all(not torch.equal(onehot[i], onehot[i + 2]) for i in range(2))  # every copy lost an enhancer
    again = train.make_paired_batch(np.random.default_rng(5), 2_048, 2, train.short_layout())
    assert torch.equal(again[0], onehot) and torch.equal(again[1], signals)


def test_curriculum_stage_parsing_and_layout():
    assert train.parse_stage("200:8192:1500-6000") == (200, 8_192, (1_500, 6_000), None)
    assert train.parse_stage("40:65536:20000-45000:genome") == (40, 65_536, (20_000, 45_000), "genome")
    for bad in ("200:8192", "x:8192:1-2", "200:8192:6000-1500", "200:4096:1000-5000", "0:8192:1-2",
                "200:8192:1-2:sparse", "200:8192:1-2:genome:x"):
        try:
            train.parse_stage(bad)
        except Exception as error:  # argparse.ArgumentTypeError, shown by argparse as a usage error
            assert "stage" in str(error)
        else:
            raise AssertionError(f"{bad!r} was accepted")
    short, long = train.stage_layout(2_048, (300, 1_200)), train.stage_layout(16_384, (3_000, 12_000))
    assert short.distal_range == (300, 1_200) and short.promoter_every == train.short_layout().promoter_every
    assert long.distal_range == (3_000, 12_000) and long.promoter_every == train.long_layout(12_000).promoter_every
    chromosome = simulate_chromosome("t", 16_384, np.random.default_rng(2), long)
    pairs = [(p, chromosome.elements[p.distal_partner]) for p in chromosome.elements
             if p.role == "promoter" and p.distal_partner is not None]
    assert pairs and all(3_000 - 600 <= abs(p.start - e.start) <= 12_000 + 600 for p, e in pairs)
    # the genome layout: the sample genome's sparse spacing (the simulator's defaults), pairs as asked
    genome = train.stage_layout(65_536, (20_000, 45_000), "genome")
    assert genome.distal_range == (20_000, 45_000) and genome.distal_pairs == 2
    assert genome.promoter_every == Layout().promoter_every > 4 * long.promoter_every
    assert train.stage_layout(2_048, (300, 1_200), "genome") == short  # short stages keep the short layout


def test_checkpoint_states_the_longest_window_trained_on(tmp_path):
    from pgf.models.registry import load_checkpoint, save_checkpoint

    model = train.build_model(train.model_config(context_length=32_768, n_layer=1), seed=0)
    train.with_trained_context(model, 16_384)  # a shorter fine-tuning phase keeps what came before
    assert model.config.context_length == 32_768
    train.with_trained_context(model, 65_536)
    save_checkpoint(model, tmp_path)
    assert load_checkpoint(tmp_path).info.context_length == 65_536


def test_snv_copies_differ_by_their_snvs_and_carry_the_rescored_truth():
    """with_snvs: at most K bases change, half of them at planted sites; the copy's truth is
    the grammar applied to the edited sequence (a site's loss lowers its own bump)."""
    from pgf.sim.grammar import Grammar, render_signals, rescore_elements

    chromosome = simulate_chromosome("t", 2_048, np.random.default_rng(8), train.short_layout())
    sequence, signals = train.with_snvs(chromosome, np.random.default_rng(1), 12)
    changed = np.flatnonzero(np.frombuffer(sequence.encode(), "u1") != np.frombuffer(chromosome.sequence.encode(), "u1"))
    assert 6 <= changed.size <= 12
    site_bases = {p for e in chromosome.elements for s in e.sites for p in range(s.start, s.end)}
    assert sum(int(p) in site_bases for p in changed) >= 2
    assert all(any(e.start - 150 <= p < e.end + 150 for e in chromosome.elements) for p in changed)
    expected = render_signals(2_048, rescore_elements(chromosome.elements, sequence, Grammar()), Grammar())
    assert np.array_equal(signals, expected) and not np.allclose(signals, chromosome.signals)


@pytest.mark.slow
def test_taylor_kind_trains_the_input_gradient_toward_the_truths_snv_effects():
    """make_taylor_batch marks one 200-bp readout per window and carries the truth's
    first-order SNV effects on it; the Taylor term is linear in its weight, positive, and
    reaches the parameters through the input gradient (double backward)."""
    from pgf.sim.grammar import Grammar

    onehot, signals, mask, effects = train.make_taylor_batch(np.random.default_rng(2), 1_024, 2, train.short_layout())
    assert onehot.shape == (2, 1_024, 4) and mask.shape == signals.shape == (2, 1_024, 2) and effects.shape == (2, 1_024, 4)
    assert torch.equal(mask.sum(dim=(1, 2)), torch.full((2,), 200.0)) and effects.abs().sum() > 0
    kind = train.with_taylor_targets(np.random.default_rng(4), train.window_kind(
        np.random.default_rng(3), 1_024, 2, train.short_layout(), False, Grammar()))
    assert kind.taylor_scale > 0
    model = train.build_model(train.model_config(1_024, n_layer=1), seed=0)
    losses, gradients = [], []
    for weight in (0.0, 1.0, 2.0):
        model.zero_grad()
        loss = train.step_loss(model, kind, np.random.default_rng(9), 0.0, taylor_weight=weight)
        loss.backward()
        losses.append(loss.item())
        gradients.append(model.layers[0].mixer.mamba_fwd.in_proj.weight.grad.clone())
    assert losses[1] > losses[0] and losses[2] == pytest.approx(2 * losses[1] - losses[0], rel=1e-5)
    assert not torch.allclose(gradients[0], gradients[1])


TINY_RUN = ["--steps", "2", "--layers", "1", "--short-length", "1024", "--short-batch", "1", "--long-length", "8192",
            "--long-pair-max", "7000", "--long-start", "1", "--long-every", "1", "--validate-every", "2"]


@pytest.mark.slow
@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_a_tiny_run_trains_on_the_chosen_device_and_saves_a_cpu_checkpoint(tmp_path, device):
    import json
    import subprocess
    import sys

    from pgf.models.registry import load_checkpoint

    done = subprocess.run([sys.executable, str(train.__file__), "--out", str(tmp_path), "--device", device, *TINY_RUN],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    log = json.loads((tmp_path / "training_log.json").read_text())
    assert (log["device"] == "cpu") == (device == "cpu")
    assert [entry["window"] for entry in log["log"]] == [1024, 8192]
    assert all(np.isfinite(entry["loss"]) for entry in log["log"])
    model = load_checkpoint(tmp_path).model
    assert all(p.device.type == "cpu" for p in model.parameters())


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_asking_for_cuda_without_a_gpu_is_refused_with_the_reason(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(train.__file__), "--out", str(tmp_path), "--device", "cuda", *TINY_RUN],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "torch sees no CUDA GPU" in done.stderr
    assert not (tmp_path / "model.safetensors").exists()
