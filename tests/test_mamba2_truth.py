"""Mamba-2 models against a direct sequential fp64 statement of the formulas (REFERENCE.md), written
here from the state dicts alone: one position and one head at a time, no pgf code. This covers what
transformers cannot (groups > 1, the d_mlp branch, the gated-norm variants, the GatedMLP, the
Caduceus wrappers)."""

import math

import pytest
import torch

from helpers import (
    MAMBA2_SHAPE,
    PLANT_CMAP,
    caduceus_mamba2_checkpoint,
    mamba2_mixer_weights,
    native_mamba2_checkpoint,
    onehot,
)
from pgf.models.mamba2 import Mamba2Mixer
from pgf.models.registry import load_model


def silu(v):
    return v * torch.sigmoid(v)


def rms(v, weight, eps=1e-5):
    return v / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + eps) * weight


def relative(got, expected):
    return float((got - expected).abs().max() / expected.abs().max())


def mixer_reference(w, u, H, P, G, N, d_mlp=0, K=4, rmsnorm=True, norm_before_gate=False, dt_limit=(0.0, math.inf),
                    D_has_hdim=False):
    """Mamba-2 mixer on one sequence u (L, D), position by position and head by head."""
    L = u.shape[0]
    d_ssm, GN = H * P, G * N
    proj = u @ w["in_proj.weight"].T + w.get("in_proj.bias", 0)
    z0, x0, z, xBC, dt = torch.split(proj, [d_mlp, d_mlp, d_ssm, d_ssm + 2 * GN, H], dim=-1)
    conv = torch.zeros_like(xBC)
    for t in range(L):
        total = w["conv1d.bias"].clone() if "conv1d.bias" in w else torch.zeros(xBC.shape[1], dtype=u.dtype)
        for k in range(K):
            s = t - (K - 1) + k  # left padding of K - 1 zeros
            if s >= 0:
                total = total + w["conv1d.weight"][:, 0, k] * xBC[s]
        conv[t] = silu(total)
    x, B, C = conv[:, :d_ssm], conv[:, d_ssm:d_ssm + GN], conv[:, d_ssm + GN:]
    y = torch.zeros(L, d_ssm, dtype=u.dtype)
    for h in range(H):
        g = h // (H // G)
        A = -torch.exp(w["A_log"][h])
        S = torch.zeros(P, N, dtype=u.dtype)
        for t in range(L):
            step = torch.nn.functional.softplus(dt[t, h] + w["dt_bias"][h]).clamp(dt_limit[0], dt_limit[1])
            x_t = x[t, h * P:(h + 1) * P]
            S = torch.exp(step * A) * S + step * torch.outer(x_t, B[t, g * N:(g + 1) * N])
            skip = w["D"][h * P:(h + 1) * P] if D_has_hdim else w["D"][h]
            y[t, h * P:(h + 1) * P] = S @ C[t, g * N:(g + 1) * N] + skip * x_t
    gate = silu(z)
    if rmsnorm:
        v = y if norm_before_gate else y * gate
        v = torch.cat([rms(part, 1.0) for part in v.split(d_ssm // G, dim=-1)], dim=-1) * w["norm.weight"]
        y = v * gate if norm_before_gate else v
    else:
        y = y * gate
    if d_mlp:
        y = torch.cat([silu(z0) * x0, y], dim=-1)
    return y @ w["out_proj.weight"].T + w.get("out_proj.bias", 0)


def sub(state, prefix):
    return {k[len(prefix):]: v.double() for k, v in state.items() if k.startswith(prefix)}


VARIANTS = {
    "groups-and-d_mlp": {},
    "norm_before_gate": {"norm_before_gate": True},
    "no rmsnorm": {"rmsnorm": False},
    "D per channel": {"D_has_hdim": True},
    "dt_limit": {"dt_limit": (0.3, 0.7)},
    "biases, no conv bias": {"bias": True, "conv_bias": False},
    "one group, no d_mlp": {"G": 1, "d_mlp": 0, "expand": 2},
}


def variant_mixer(variant, seed=3):
    """(a random fp64 Mamba2Mixer of one of VARIANTS, its weights, its shape, the options the
    formula takes)."""
    options = dict(VARIANTS[variant])
    shape = MAMBA2_SHAPE | {k: options.pop(k) for k in ("G", "d_mlp") if k in options}
    expand = options.pop("expand", 3)
    bias, conv_bias = options.pop("bias", False), options.pop("conv_bias", True)
    D, H, P, G, N, d_mlp, K = (shape[k] for k in ("d_model", "H", "P", "G", "N", "d_mlp", "K"))
    weights = mamba2_mixer_weights(torch.Generator().manual_seed(seed), D, H, P, G, N, d_mlp, K, bias=bias,
                                   conv_bias=conv_bias, rmsnorm=options.get("rmsnorm", True),
                                   D_has_hdim=options.get("D_has_hdim", False))
    mixer = Mamba2Mixer(D, d_state=N, d_conv=K, expand=expand, headdim=P, d_ssm=H * P, ngroups=G, bias=bias,
                        conv_bias=conv_bias, **options)
    mixer.load_state_dict(weights, strict=True)
    return mixer.double(), weights, shape, options


@pytest.mark.parametrize("variant", VARIANTS)
def test_mixer_equals_the_formula_fp64(variant):
    mixer, weights, shape, options = variant_mixer(variant)
    D, H, P, G, N, d_mlp, K = (shape[k] for k in ("d_model", "H", "P", "G", "N", "d_mlp", "K"))
    u = torch.randn(1, 70, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    expected = mixer_reference({k: v.double() for k, v in weights.items()}, u[0], H, P, G, N, d_mlp, K, **options)
    with torch.no_grad():
        got = mixer(u)[0]
        # tile by tile from the carried state: the same function
        state, tiles = mixer.zero_state(1, u), []
        for start in range(0, 70, 17):
            out, state = mixer.forward_tile(u[:, start:start + 17], state)
            tiles.append(out)
        whole_state = mixer.forward_tile(u, mixer.zero_state(1, u))[1]
    assert relative(got, expected) <= 1e-10
    assert relative(torch.cat(tiles, dim=1)[0], expected) <= 1e-10
    torch.testing.assert_close(state.ssm, whole_state.ssm, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state.conv, whole_state.conv, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kept", [True, False], ids=["in_proj-kept", "slim"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_mixer_tile_vjp_equals_autograd_fp64(variant, kept):
    """`tile_vjp` tile by tile in reverse, carrying the state's cotangent, from a non-zero start
    state: the input's and the start state's gradients of <out_bar, out> + <state_bar, last state>
    by autograd through the whole sequence (tiles of 17 over 70 positions, the scan's chunk 64)."""
    from pgf.models.mamba2 import Mamba2State

    mixer = variant_mixer(variant)[0]
    g = torch.Generator().manual_seed(5)
    u = torch.randn(1, 70, mixer.d_model, generator=g, dtype=torch.float64)
    zero = mixer.zero_state(1, u)
    start = Mamba2State(*(torch.randn(t.shape, generator=g, dtype=torch.float64) for t in zero))
    out_bar = torch.randn(1, 70, mixer.d_model, generator=g, dtype=torch.float64)
    last_bar = Mamba2State(*(torch.randn(t.shape, generator=g, dtype=torch.float64) for t in zero))

    leaves = [t.clone().requires_grad_(True) for t in (u, *start)]
    out, last = mixer.forward_tile(leaves[0], Mamba2State(*leaves[1:]))
    objective = (out * out_bar).sum() + sum((t * t_bar).sum() for t, t_bar in zip(last, last_bar))
    expected = torch.autograd.grad(objective, leaves)

    states, residuals, tiles = [start], [], range(0, 70, 17)
    for s in tiles:
        _, after, residual = mixer.forward_tile_saving(u[:, s:s + 17], states[-1])
        states.append(after)
        residuals.append(residual if kept else residual.slim())
    u_bar, state_bar = [None] * len(tiles), last_bar
    for i, s in reversed(list(enumerate(tiles))):
        u_bar[i], state_bar = mixer.tile_vjp(u[:, s:s + 17], states[i], residuals[i], out_bar[:, s:s + 17], state_bar)
    for name, got, want in zip(("u", "conv", "ssm"), (torch.cat(u_bar, dim=1), *state_bar), expected):
        assert want.abs().max() > 0 and relative(got, want) <= 1e-10, name


def native_reference(state, config, ids):
    """mamba_ssm's MambaLMHeadModel: add, norm, mixer; add, norm2, GatedMLP; norm_f; LM head."""
    shape, ssm = MAMBA2_SHAPE, config["ssm_cfg"]
    hidden, residual = state["backbone.embedding.weight"].double()[ids], None
    for i in range(config["n_layer"]):
        pre = f"backbone.layers.{i}."
        residual = hidden if residual is None else hidden + residual
        hidden = mixer_reference(sub(state, pre + "mixer."), rms(residual, state[pre + "norm.weight"].double()),
                                 shape["H"], ssm["headdim"], ssm["ngroups"], ssm["d_state"], shape["d_mlp"])
        if config["d_intermediate"]:
            residual = hidden + residual
            y, gate = (rms(residual, state[pre + "norm2.weight"].double()) @ state[pre + "mlp.fc1.weight"].double().T).chunk(2, -1)
            hidden = (y * silu(gate)) @ state[pre + "mlp.fc2.weight"].double().T
    final = rms(hidden + residual, state["backbone.norm_f.weight"].double())
    return final @ state["lm_head.weight"].double().T


def token_ids(x, base_ids, n_id):
    return torch.where(x.sum(-1) > 0, torch.tensor(base_ids)[x.argmax(-1)], torch.tensor(n_id))[0]


@pytest.mark.parametrize("d_intermediate, tie", [(40, True), (0, False)])
def test_native_lm_with_gated_mlp_equals_the_formula_fp64(tmp_path, d_intermediate, tie):
    directory, config, state = native_mamba2_checkpoint(tmp_path / "native", d_intermediate=d_intermediate, tie=tie)
    model = load_model(str(directory), dtype=torch.float64).model
    x = onehot(60)
    expected = native_reference(state, config, token_ids(x, [7, 8, 9, 10], 11))
    with torch.no_grad():
        got = model(x)["logits"][0]
    assert got.shape == (60, 16)
    assert relative(got, expected) <= 1e-10


def caduceus_reference(state, config, ids, rcps, fused=True):
    """Caduceus with Mamba-2 mixers: the BiMamba "add" rule per block; ps: both strands through the same
    weights, the fused add+norm feeding the second half forward and the flipped first half as RC."""
    s, d, pre = MAMBA2_SHAPE, MAMBA2_SHAPE["d_model"], "caduceus.backbone."
    mixer_args = (s["H"], s["P"], s["G"], s["N"], s["d_mlp"])
    cmap = torch.tensor([PLANT_CMAP.get(i, i) for i in range(8)])
    table = state[pre + "embeddings.word_embeddings." + ("embedding.weight" if rcps else "weight")].double()

    def bimamba(i, h):
        m = f"{pre}layers.{i}.mixer." + ("submodule." if rcps else "")
        fwd, rev = sub(state, m + "mamba_fwd."), sub(state, m + "mamba_rev.")
        rev |= {k: v for k, v in fwd.items() if k.startswith(("in_proj", "out_proj"))}  # tied
        return mixer_reference(fwd, h, *mixer_args) + mixer_reference(rev, h.flip(0), *mixer_args).flip(0)

    def flip_lc(t):
        return t.flip(0, 1)

    stream = torch.cat([table[ids], flip_lc(table[cmap[ids.flip(0)]])], dim=-1) if rcps else table[ids]
    for i in range(config["n_layer"]):
        w = state[f"{pre}layers.{i}.norm." + ("submodule." if rcps and not fused else "") + "weight"].double()
        if not rcps:
            stream = stream + bimamba(i, rms(stream, w))
            if config.get("d_intermediate"):
                y, gate = (rms(stream, state[f"{pre}layers.{i}.norm2.weight"].double())
                           @ state[f"{pre}layers.{i}.mlp.fc1.weight"].double().T).chunk(2, -1)
                stream = stream + (y * silu(gate)) @ state[f"{pre}layers.{i}.mlp.fc2.weight"].double().T
            continue
        first, second = stream[:, :d], stream[:, d:]
        forward, rc = (second, first) if fused else (first, second)
        residual = torch.cat([forward, rc], dim=-1)
        mixed = torch.cat([bimamba(i, rms(forward, w)), flip_lc(bimamba(i, rms(flip_lc(rc), w)))], dim=-1)
        stream = residual + mixed
    w_f = state[pre + "norm_f." + ("submodule." if rcps and not fused else "") + "weight"].double()
    if not rcps:
        return rms(stream, w_f) @ table.T
    return rms(stream[:, :d], w_f) @ table.T + rms(stream[:, d:].flip(-1), w_f) @ table[cmap].T


@pytest.mark.parametrize("layout, rcps, fused, d_intermediate", [
    ("nested", True, True, 0), ("flat", True, False, 0), ("flat", False, True, 40), ("nested", False, True, 100),
])
def test_caduceus_with_mamba2_mixers_equals_the_formula_fp64(tmp_path, layout, rcps, fused, d_intermediate):
    directory, config, state = caduceus_mamba2_checkpoint(tmp_path / "c", layout=layout, rcps=rcps, fused=fused,
                                                          d_intermediate=d_intermediate)
    loaded = load_model(str(directory), dtype=torch.float64)
    model = loaded.model
    if rcps:
        mixer = model.caduceus.backbone.layers[0].bimamba
        assert mixer.mamba_rev.in_proj.weight is mixer.mamba_fwd.in_proj.weight
        assert model.lm_head.lm_head.weight is model.caduceus.backbone.embeddings.word_embeddings.embedding.weight
    x = onehot(50, seed=2)
    expected = caduceus_reference(state, config | {"d_intermediate": d_intermediate}, token_ids(x, [3, 4, 5, 6], 2),
                                  rcps, fused)
    with torch.no_grad():
        got = model(x)["logits"][0]
    assert relative(got, expected) <= 1e-10
    assert "Mamba-2 mixers" in loaded.info.architecture


def reverse_complement(x):
    return x.flip(1).flip(-1)  # columns A C G T reversed are the complements T G C A


@pytest.mark.parametrize("spec", ["checkpoint", "random-test-mamba2"])
def test_ps_with_mamba2_mixers_is_reverse_complement_equivariant_fp64(tmp_path, spec):
    if spec == "checkpoint":
        spec = str(caduceus_mamba2_checkpoint(tmp_path / "ps", layout="nested")[0])
    model = load_model(spec, dtype=torch.float64).model
    cmap = [PLANT_CMAP.get(i, i) for i in range(8)]
    x = onehot(90, seed=5)
    with torch.no_grad():
        logits, logits_rc = model(x)["logits"], model(reverse_complement(x))["logits"]
    assert logits.abs().max() > 0.1
    assert (logits_rc - logits.flip(1)[..., cmap]).abs().max() <= 1e-12 * logits.abs().max()
