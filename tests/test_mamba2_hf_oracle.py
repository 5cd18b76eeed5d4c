"""Our Mamba-2 loaders against transformers' own Mamba2ForCausalLM (an independent implementation):
its checkpoint as saved by save_pretrained, and the same weights re-saved in mamba_ssm's native
layout (MambaConfig + pytorch_model.bin). transformers is an oracle for n_groups 1 and no d_mlp
branch (REFERENCE.md); its 5.x CPU path matches the formula for n_groups 2 too, checked as well."""

import json

import pytest
import torch

from pgf.engine.autograd import AutogradEngine
from pgf.models.registry import load_model
from pgf.models.targets import parse_target

transformers = pytest.importorskip("transformers")
if int(transformers.__version__.split(".")[0]) < 5:
    pytest.skip("transformers < 5: its Mamba2 torch_forward differs from mamba_ssm (REFERENCE.md)", allow_module_level=True)

VOCAB = "A=7,C=8,G=9,T=10,N=11"
BASE_IDS, N_ID = [7, 8, 9, 10], 11
D, H, P, N = 16, 4, 8, 8


def save_native(model, directory, n_groups):
    """The transformers weights under mamba_ssm's native names and MambaConfig."""
    directory.mkdir()
    state = {k.replace("backbone.embeddings.", "backbone.embedding."): v.detach().clone()
             for k, v in model.state_dict().items()}
    torch.save(state, directory / "pytorch_model.bin")
    config = {
        "d_model": D, "d_intermediate": 0, "n_layer": 2, "vocab_size": 16,
        "ssm_cfg": {"layer": "Mamba2", "d_state": N, "d_conv": 4, "expand": 2, "headdim": P, "ngroups": n_groups,
                    "chunk_size": 32},
        "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
        "pad_vocab_size_multiple": 8, "tie_embeddings": False,
    }
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture(scope="module", params=[1, 2], ids=["1 group", "2 groups"])
def hf_checkpoints(request, tmp_path_factory):
    n_groups = request.param
    torch.manual_seed(0)
    config = transformers.Mamba2Config(
        vocab_size=16, hidden_size=D, num_heads=H, head_dim=P, state_size=N, n_groups=n_groups, num_hidden_layers=2,
        expand=2, conv_kernel=4, chunk_size=32, use_cache=False,
    )
    model = transformers.Mamba2ForCausalLM(config).eval()
    with torch.no_grad():  # steps that carry memory, and norms and skips that are not all ones
        for layer in model.backbone.layers:
            layer.mixer.dt_bias.add_(2.0)
            layer.mixer.D.normal_()
            layer.mixer.norm.weight.normal_(1.0, 0.3)
            layer.norm.weight.normal_(1.0, 0.3)
    directory = tmp_path_factory.mktemp("hf_mamba2")
    model.save_pretrained(directory)
    return model, directory, save_native(model, directory.parent / f"{directory.name}_native", n_groups)


def token_ids(L, seed):
    g = torch.Generator().manual_seed(seed)
    bases = torch.randint(0, 4, (1, L), generator=g)
    ids = torch.tensor(BASE_IDS)[bases]
    ids[0, 5] = N_ID  # one unknown base
    onehot = torch.nn.functional.one_hot(bases, 4).float()
    onehot[0, 5] = 0
    return ids, onehot


@pytest.mark.parametrize("layout", ["transformers", "native"])
def test_logits_equal_transformers(hf_checkpoints, layout):
    hf_model, directory, native = hf_checkpoints
    loaded = load_model(str(directory if layout == "transformers" else native), vocab=VOCAB)
    assert ("Mamba2ForCausalLM" if layout == "transformers" else "mamba_ssm") in loaded.info.architecture
    ids, onehot = token_ids(300, seed=300)
    with torch.no_grad():
        expected = hf_model(input_ids=ids, use_cache=False).logits
        got = loaded.model(onehot)["logits"]
    assert got.shape == expected.shape == (1, 300, 16)
    assert float((got - expected).abs().max() / expected.abs().max()) <= 1e-5


@pytest.mark.parametrize("layout", ["transformers", "native"])
def test_loglik_gradient_equals_transformers_autograd(hf_checkpoints, layout):
    hf_model, directory, native = hf_checkpoints
    model = load_model(str(directory if layout == "transformers" else native), vocab=VOCAB).model
    ids, onehot = token_ids(300, seed=1)
    ours = AutogradEngine().gradient(model, onehot, parse_target("loglik", model).readout([0]))

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
    assert float((ours.gradient - expected).abs().max() / expected.abs().max()) <= 1e-5
