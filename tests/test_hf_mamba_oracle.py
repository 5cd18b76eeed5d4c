"""Our HF-Mamba loader against transformers' own MambaForCausalLM (an independent implementation)."""

import json

import pytest
import torch

from pgf.engine.autograd import AutogradEngine
from pgf.errors import ModelError
from pgf.models.registry import load_model
from pgf.models.targets import parse_target

transformers = pytest.importorskip("transformers")

VOCAB = "A=7,C=8,G=9,T=10,N=11"
BASE_IDS, N_ID = [7, 8, 9, 10], 11


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.MambaConfig(
        vocab_size=16, hidden_size=16, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4, use_cache=False
    )
    model = transformers.MambaForCausalLM(config).eval()
    with torch.no_grad():  # make the scan's decays and the conv matter more than at init
        for layer in model.backbone.layers:
            layer.mixer.dt_proj.bias.add_(1.0)
            layer.norm.weight.mul_(1.5)
    directory = tmp_path_factory.mktemp("hf_mamba")
    model.save_pretrained(directory)
    return model, directory


def token_ids(L, seed):
    g = torch.Generator().manual_seed(seed)
    bases = torch.randint(0, 4, (1, L), generator=g)
    ids = torch.tensor(BASE_IDS)[bases]
    ids[0, 5] = N_ID  # one unknown base
    onehot = torch.nn.functional.one_hot(bases, 4).float()
    onehot[0, 5] = 0
    return ids, onehot


@pytest.mark.parametrize("L", [512, 2048])
def test_logits_equal_transformers(hf_checkpoint, L):
    hf_model, directory = hf_checkpoint
    ours = load_model(str(directory), vocab=VOCAB).model
    ids, onehot = token_ids(L, seed=L)
    with torch.no_grad():
        expected = hf_model(input_ids=ids, use_cache=False).logits
        got = ours(onehot)["logits"]
    assert got.shape == expected.shape == (1, L, 16)
    relative = (got - expected).abs().max() / expected.abs().max()
    assert relative <= 1e-5


def test_loglik_gradient_equals_transformers_autograd(hf_checkpoint):
    hf_model, directory = hf_checkpoint
    loaded = load_model(str(directory), vocab=VOCAB)
    L = 512
    ids, onehot = token_ids(L, seed=1)
    target = parse_target("loglik", loaded.model)
    ours = AutogradEngine().gradient(loaded.model, onehot, target.readout([0]))

    weight = hf_model.backbone.embeddings.weight.detach()
    embeds = weight[ids].clone().requires_grad_(True)
    log_probs = torch.log_softmax(hf_model(inputs_embeds=embeds, use_cache=False).logits, dim=-1)
    next_ids = ids[:, 1:]
    observed = (next_ids != N_ID).float()
    f = (log_probs[:, :-1].gather(-1, next_ids.unsqueeze(-1)).squeeze(-1) * observed).sum()
    (grad_embeds,) = torch.autograd.grad(f, embeds)
    # our embedding is onehot @ E[ACGT] + (1 - sum onehot) E[N]: d emb / d onehot_b = E[b] - E[N]
    expected = grad_embeds @ (weight[BASE_IDS] - weight[N_ID]).T

    torch.testing.assert_close(ours.target_value[0], f.detach(), rtol=1e-5, atol=1e-4)
    relative = (ours.gradient - expected).abs().max() / expected.abs().max()
    assert relative <= 1e-5


def test_lm_head_is_tied_after_loading(hf_checkpoint):
    _, directory = hf_checkpoint
    model = load_model(str(directory), vocab=VOCAB).model
    assert model.lm_head.weight is model.backbone.embeddings.weight
    assert model.output_channels["logits"][7:11] == ["A", "C", "G", "T"]
    assert parse_target(None, model).spec == "loglik"


def test_vocabulary_is_required_and_checked(hf_checkpoint, tmp_path):
    _, directory = hf_checkpoint
    with pytest.raises(ModelError, match="which token is each base"):
        load_model(str(directory))
    with pytest.raises(ModelError, match="outside the vocabulary"):
        load_model(str(directory), vocab="A=7,C=8,G=9,T=10,N=99")
    with pytest.raises(ModelError, match="lacks a token id for N"):
        load_model(str(directory), vocab="A=7,C=8,G=9,T=10")
    # the vocabulary may also live in config.json
    config = json.loads((directory / "config.json").read_text())
    config["pgf_vocab"] = {"A": 7, "C": 8, "G": 9, "T": 10, "N": 11}
    copy = tmp_path / "with_vocab"
    copy.mkdir()
    (copy / "config.json").write_text(json.dumps(config))
    (copy / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes())
    assert load_model(str(copy)).model.vocabulary.base_ids == (7, 8, 9, 10)
