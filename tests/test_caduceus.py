"""Caduceus ph/ps from checkpoints written with the published key names (independently of our modules)."""

import json
import math

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from pgf.errors import ModelError
from pgf.models.caduceus import flip_lc
from pgf.models.registry import load_model
from pgf.models.targets import parse_target
from mixers import bimamba as whole

D, N, E, K = 8, 4, 16, 4
R = math.ceil(D / 16)
V = 16  # 12 tokens padded to a multiple of 8
CMAP = {i: i for i in range(12)} | {7: 10, 8: 9, 9: 8, 10: 7}
CMAP_LIST = [CMAP.get(i, i) for i in range(V)]
BASE_IDS, N_ID = [7, 8, 9, 10], 11


def published_state(rcps, n_layer=2, seed=0):
    """A random Caduceus state dict under the published names; tied tensors stored once."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape, scale=0.5: torch.randn(*shape, generator=g) * scale  # noqa: E731
    pre = "caduceus.backbone."
    state = {}
    if rcps:
        state[pre + "embeddings.word_embeddings.embedding.weight"] = rand(V, D)
        state[pre + "embeddings.word_embeddings.complement_map"] = torch.tensor(CMAP_LIST)
        state["lm_head.complement_map"] = torch.tensor(CMAP_LIST)
    else:
        state[pre + "embeddings.word_embeddings.weight"] = rand(V, D)
    for i in range(n_layer):
        mixer = f"{pre}layers.{i}.mixer." + ("submodule." if rcps else "")
        for direction in ("mamba_fwd", "mamba_rev"):
            m = mixer + direction + "."
            if direction == "mamba_fwd":  # in/out projections are tied: stored once
                state[m + "in_proj.weight"] = rand(2 * E, D)
                state[m + "out_proj.weight"] = rand(D, E)
            state[m + "conv1d.weight"] = rand(E, 1, K)
            state[m + "conv1d.bias"] = rand(E, scale=0.1)
            state[m + "x_proj.weight"] = rand(R + 2 * N, E)
            state[m + "dt_proj.weight"] = rand(E, R)
            state[m + "dt_proj.bias"] = torch.log(torch.expm1(torch.rand(E, generator=g) * 0.5 + 0.05))
            state[m + "A_log"] = torch.log(torch.rand(E, N, generator=g) * 4 + 0.5)
            state[m + "D"] = rand(E, scale=1.0)
        state[f"{pre}layers.{i}.norm.weight"] = 1 + rand(D, scale=0.3)
    state[pre + "norm_f.weight"] = 1 + rand(D, scale=0.3)
    return state


def write_checkpoint(directory, rcps, fused=True, state=None, n_layer=2, **config_overrides):
    directory.mkdir(parents=True, exist_ok=True)
    state = published_state(rcps, n_layer) if state is None else state
    if rcps and not fused:  # the unfused RCPS wrappers nest the norms one level deeper
        state = {k.replace(".norm.weight", ".norm.submodule.weight").replace("norm_f.weight", "norm_f.submodule.weight"): v
                 for k, v in state.items()}
    safetensors.torch.save_file(state, str(directory / "model.safetensors"))
    config = {
        "model_type": "caduceus", "d_model": D, "n_layer": n_layer, "vocab_size": 12, "pad_vocab_size_multiple": 8,
        "ssm_cfg": {"d_state": N, "d_conv": K, "expand": 2, "dt_rank": "auto", "conv_bias": True, "bias": False},
        "rms_norm": True, "fused_add_norm": fused, "residual_in_fp32": False, "norm_epsilon": 1e-5,
        "bidirectional": True, "bidirectional_strategy": "add", "bidirectional_weight_tie": True,
        "rcps": rcps, "complement_map": {str(k): v for k, v in CMAP.items()},
    } | config_overrides
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def random_onehot(L, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = F.one_hot(torch.randint(0, 4, (1, L), generator=g), 4).float()
    x[0, 3] = 0  # an N
    return x


def reverse_complement(onehot):
    return onehot.flip(1).flip(-1)  # columns A C G T reversed are the complements T G C A


@pytest.mark.parametrize("fused", [True, False])
def test_ps_is_exactly_reverse_complement_equivariant(tmp_path, fused):
    model = load_model(str(write_checkpoint(tmp_path / "ps", rcps=True, fused=fused))).model
    x = random_onehot(200)
    with torch.no_grad():
        logits = model(x)["logits"]
        logits_rc = model(reverse_complement(x))["logits"]
    expected = logits.flip(1)[..., CMAP_LIST]
    assert logits.abs().max() > 0.1
    assert (logits_rc - expected).abs().max() <= 1e-5 * logits.abs().max()


def test_ph_is_not_equivariant(tmp_path):
    model = load_model(str(write_checkpoint(tmp_path / "ph", rcps=False))).model
    x = random_onehot(100)
    with torch.no_grad():
        difference = model(reverse_complement(x))["logits"] - model(x)["logits"].flip(1)[..., CMAP_LIST]
    assert difference.abs().max() > 1e-2


def rms(x, weight):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * weight


def test_ps_fused_half_selection_is_pinned(tmp_path):
    """One fused ps block, written out by hand from the published rule: the block's add+norm
    feeds the second half into the forward slot and the flipped first half into the RC slot."""
    state = published_state(rcps=True, n_layer=1, seed=4)
    fused = load_model(str(write_checkpoint(tmp_path / "fused", rcps=True, fused=True, state=state, n_layer=1))).model
    unfused = load_model(str(write_checkpoint(tmp_path / "unfused", rcps=True, fused=False, state=state, n_layer=1))).model
    x = random_onehot(60, seed=2)
    pre = "caduceus.backbone."
    W = state[pre + "embeddings.word_embeddings.embedding.weight"]
    ids = torch.where(x.sum(-1) > 0, torch.tensor(BASE_IDS)[x.argmax(-1)], torch.tensor(N_ID))
    h0 = torch.cat([W[ids], W[torch.tensor(CMAP_LIST)[ids]].flip(-1)], dim=-1)  # cat(E(x), flip_LC(E(RC(x))))
    first, second = h0[..., :D], h0[..., D:]
    w, w_f = state[pre + "layers.0.norm.weight"], state[pre + "norm_f.weight"]
    bimamba = fused.caduceus.backbone.layers[0].bimamba  # the mixer itself is checked against transformers
    with torch.no_grad():
        normed_fwd, normed_rc = rms(second, w), flip_lc(rms(flip_lc(first), w))  # the swap
        residual = torch.cat([second, first], dim=-1)
        mixed = torch.cat([whole(bimamba, normed_fwd), flip_lc(whole(bimamba, flip_lc(normed_rc)))], dim=-1)
        summed = mixed + residual
        final = torch.cat([rms(summed[..., :D], w_f), flip_lc(rms(flip_lc(summed[..., D:]), w_f))], dim=-1)  # no swap
        expected = final[..., :D] @ W.T + final[..., D:].flip(-1) @ W[CMAP_LIST].T
        got_fused = fused(x)["logits"]
        got_unfused = unfused(x)["logits"]
    torch.testing.assert_close(got_fused, expected, rtol=1e-5, atol=1e-5)
    assert (got_unfused - expected).abs().max() > 1e-2  # the unfused semantics would fail this test


def test_ph_matches_a_plain_statement(tmp_path):
    state = published_state(rcps=False, n_layer=2, seed=5)
    model = load_model(str(write_checkpoint(tmp_path / "ph", rcps=False, state=state))).model
    x = random_onehot(50, seed=3)
    pre = "caduceus.backbone."
    W = state[pre + "embeddings.word_embeddings.weight"]
    ids = torch.where(x.sum(-1) > 0, torch.tensor(BASE_IDS)[x.argmax(-1)], torch.tensor(N_ID))
    with torch.no_grad():
        hidden, residual = W[ids], None
        for i, layer in enumerate(model.caduceus.backbone.layers):
            residual = hidden if residual is None else hidden + residual
            hidden = whole(layer.bimamba, rms(residual, state[f"{pre}layers.{i}.norm.weight"]))
        logits = rms(hidden + residual, state[pre + "norm_f.weight"]) @ W.T  # LM head tied to the embeddings
        torch.testing.assert_close(model(x)["logits"], logits, rtol=1e-5, atol=1e-5)


def test_ties_vocabulary_and_loglik(tmp_path):
    loaded = load_model(str(write_checkpoint(tmp_path / "ps", rcps=True)))
    model = loaded.model
    assert model.lm_head.lm_head.weight is model.caduceus.backbone.embeddings.word_embeddings.embedding.weight
    mixer = model.caduceus.backbone.layers[1].bimamba
    assert mixer.mamba_rev.in_proj.weight is mixer.mamba_fwd.in_proj.weight
    assert "reverse-complement equivariant" in loaded.info.architecture
    target = parse_target(None, model)
    assert target.spec == "loglik" and target.lm_kind == "masked"
    x = random_onehot(30)
    with torch.no_grad():
        logits = model(x)["logits"]
        f = target.contributions({"logits": logits}, x, [0]).sum()
    log_probs = torch.log_softmax(logits, -1)[0]
    expected = sum(log_probs[l, BASE_IDS[int(x[0, l].argmax())]] for l in range(30) if l != 3)
    torch.testing.assert_close(f, expected)


def test_loader_errors_name_published_keys(tmp_path):
    state = published_state(rcps=True)
    del state["caduceus.backbone.layers.1.mixer.submodule.mamba_rev.A_log"]
    with pytest.raises(ModelError, match=r"missing weight 'caduceus\.backbone\.layers\.1\.mixer\.submodule\.mamba_rev\.A_log'"):
        load_model(str(write_checkpoint(tmp_path / "a", rcps=True, state=state)))
    state = published_state(rcps=True)
    state["lm_head.complement_map"] = torch.arange(V)
    with pytest.raises(ModelError, match="lm_head.complement_map in the weights differs"):
        load_model(str(write_checkpoint(tmp_path / "b", rcps=True, state=state)))
    with pytest.raises(ModelError, match="rcps models need a complement_map"):
        load_model(str(write_checkpoint(tmp_path / "c", rcps=True, complement_map=None)))
    # a ph checkpoint stored under ps names is refused by name
    with pytest.raises(ModelError, match=r"missing weight .caduceus\.backbone\.embeddings\.word_embeddings\.weight"):
        load_model(str(write_checkpoint(tmp_path / "d", rcps=False, state=published_state(rcps=True))))
