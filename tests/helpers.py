"""Small test helpers shared by several test files (importable as `helpers`: pytest's rootdir
insertion puts tests/ on the import path; no sys.path edits)."""

import json
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from pgf.models.caduceus import CaduceusConfig, CaduceusLM
from pgf.models.hf_mamba import HFMambaConfig, HFMambaLM
from pgf.models.tokens import DnaVocabulary
from pgf.models.track_ssm import TrackSSM, TrackSSMConfig


def random_sequence(length: int, seed: int) -> str:
    """Uniform random A/C/G/T of `length`, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list("ACGT"), size=length))


def write_fasta(path: Path, records: dict[str, str], width: int = 60, description: str = "") -> Path:
    """Write `records` (name -> sequence) as FASTA with `width`-base lines."""
    with open(path, "w") as handle:
        for name, sequence in records.items():
            handle.write(f">{name}{' ' + description if description else ''}\n")
            for i in range(0, len(sequence), width):
                handle.write(sequence[i : i + width] + "\n")
    return path


CMAP = {7: 10, 8: 9, 9: 8, 10: 7}


def liven(model):
    """Random init leaves the scans nearly memoryless; larger steps make long-range terms count."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("dt_proj.bias"):
                parameter.add_(1.5)
            if name.endswith("conv1d.weight"):
                parameter.mul_(2.0)
    return model


MODEL_KINDS = ("track-bi", "track-causal", "track-ew", "hf-mamba", "caduceus-ph", "caduceus-ps", "caduceus-ps-unfused")


def build(kind):
    """A tiny random model of each kind the model library supports."""
    torch.manual_seed(0)
    if kind == "track-bi":
        model = TrackSSM(TrackSSMConfig(d_model=8, n_layer=2, d_state=4, channels=("a", "b")))
    elif kind == "track-causal":
        model = TrackSSM(TrackSSMConfig(d_model=8, n_layer=2, d_state=4, bidirectional=False))
    elif kind == "track-ew":
        model = TrackSSM(TrackSSMConfig(d_model=8, n_layer=2, d_state=4, bidirectional_strategy="ew_multiply"))
    elif kind == "hf-mamba":
        model = HFMambaLM(HFMambaConfig(vocab_size=12, hidden_size=8, state_size=4, num_hidden_layers=2), DnaVocabulary((7, 8, 9, 10), 11))
    elif kind == "caduceus-ph":
        model = CaduceusLM(CaduceusConfig(d_model=8, n_layer=2, ssm_cfg={"d_state": 4}))
    elif kind == "caduceus-ps":
        model = CaduceusLM(CaduceusConfig(d_model=8, n_layer=2, ssm_cfg={"d_state": 4}, rcps=True, complement_map=CMAP))
    elif kind == "caduceus-ps-unfused":
        model = CaduceusLM(CaduceusConfig(d_model=8, n_layer=2, ssm_cfg={"d_state": 4}, rcps=True, complement_map=CMAP, fused_add_norm=False))
    else:
        raise ValueError(kind)
    return liven(model).eval()


def onehot(L, seed=0, dtype=torch.float64, batch=1):
    """Random one-hot (batch, L, 4) with an N at position 7 when L > 10."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (batch, L), generator=g), 4).to(dtype)
    if L > 10:
        x[:, 7] = 0  # an N
    return x


def load_script(name: str):
    """Import scripts/<name>.py (the repository's scripts are not a package)."""
    import importlib.util
    import sys

    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# --- Mamba-2 checkpoints in the three formats, from random weights under the published names ---

MAMBA2_SHAPE = dict(d_model=16, H=4, P=8, G=2, N=8, d_mlp=16, K=4)  # groups > 1 and a d_mlp branch
PLANT_CMAP = {3: 6, 4: 5, 5: 4, 6: 3}
DNA_VOCAB = {"A": 7, "C": 8, "G": 9, "T": 10, "N": 11}


def mamba2_mixer_weights(g, d_model, H, P, G, N, d_mlp=0, K=4, bias=False, conv_bias=True, rmsnorm=True,
                         D_has_hdim=False):
    """Random Mamba-2 mixer weights (mamba_ssm's names), with steps (dt 0.1..1) that carry memory."""
    rand = lambda *shape, scale=1.0: torch.randn(*shape, generator=g) * scale  # noqa: E731
    d_ssm = H * P
    d_inner, conv = d_ssm + d_mlp, d_ssm + 2 * G * N
    weights = {
        "in_proj.weight": rand(2 * d_inner + 2 * G * N + H, d_model, scale=d_model**-0.5),
        "conv1d.weight": rand(conv, 1, K, scale=0.5),
        "dt_bias": torch.log(torch.expm1(torch.rand(H, generator=g) * 0.9 + 0.1)),
        "A_log": torch.log(torch.rand(H, generator=g) * 2 + 0.2),
        "D": rand(d_ssm if D_has_hdim else H),
        "out_proj.weight": rand(d_model, d_inner, scale=d_inner**-0.5),
    }
    if conv_bias:
        weights["conv1d.bias"] = rand(conv, scale=0.1)
    if rmsnorm:
        weights["norm.weight"] = 1 + rand(d_ssm, scale=0.3)
    if bias:
        weights["in_proj.bias"] = rand(2 * d_inner + 2 * G * N + H, scale=0.1)
        weights["out_proj.bias"] = rand(d_model, scale=0.1)
    return weights


def mamba2_ssm_cfg(d_model, H, P, G, N, d_mlp=0, K=4, **extra):
    """The mixer's mamba_ssm arguments for that shape (expand chosen so that d_inner = H·P + d_mlp)."""
    d_inner = H * P + d_mlp
    assert d_inner % d_model == 0
    cfg = {"d_state": N, "d_conv": K, "expand": d_inner // d_model, "headdim": P, "ngroups": G}
    if d_mlp:
        cfg["d_ssm"] = H * P
    return cfg | extra


def native_mamba2_checkpoint(directory, n_layer=2, d_intermediate=0, tie=True, seed=0, vocab_size=12, **shape):
    """A mamba_ssm MambaLMHeadModel directory (MambaConfig without model_type, pytorch_model.bin) with
    Mamba-2 layers; returns (directory, config, state)."""
    shape = MAMBA2_SHAPE | shape
    d = shape["d_model"]
    g = torch.Generator().manual_seed(seed)
    V = -(-vocab_size // 8) * 8
    state = {"backbone.embedding.weight": torch.randn(V, d, generator=g) * 0.5}
    hidden = -(-d_intermediate // 128) * 128
    for i in range(n_layer):
        pre = f"backbone.layers.{i}."
        state |= {pre + "mixer." + k: v for k, v in mamba2_mixer_weights(g, **shape).items()}
        state[pre + "norm.weight"] = 1 + torch.randn(d, generator=g) * 0.3
        if d_intermediate:
            state[pre + "norm2.weight"] = 1 + torch.randn(d, generator=g) * 0.3
            state[pre + "mlp.fc1.weight"] = torch.randn(2 * hidden, d, generator=g) * d**-0.5
            state[pre + "mlp.fc2.weight"] = torch.randn(d, hidden, generator=g) * hidden**-0.5
    state["backbone.norm_f.weight"] = 1 + torch.randn(d, generator=g) * 0.3
    state["lm_head.weight"] = state["backbone.embedding.weight"] if tie else torch.randn(V, d, generator=g) * 0.5
    config = {
        "d_model": d, "d_intermediate": d_intermediate, "n_layer": n_layer, "vocab_size": vocab_size,
        "ssm_cfg": {"layer": "Mamba2", **mamba2_ssm_cfg(**shape)}, "attn_layer_idx": [], "attn_cfg": {},
        "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8,
        "tie_embeddings": tie, "pgf_vocab": DNA_VOCAB,
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    torch.save(state, directory / "pytorch_model.bin")
    return directory, config, state


def hf_mamba2_checkpoint(directory, n_layer=2, seed=0, vocab_size=16, d_model=16, H=4, P=8, G=1, N=8, K=4):
    """A Hugging Face Mamba2ForCausalLM directory (model_type mamba2, model.safetensors); returns
    (directory, config, state)."""
    g = torch.Generator().manual_seed(seed)
    state = {"backbone.embeddings.weight": torch.randn(vocab_size, d_model, generator=g) * 0.5}
    for i in range(n_layer):
        pre = f"backbone.layers.{i}."
        state |= {pre + "mixer." + k: v for k, v in mamba2_mixer_weights(g, d_model, H, P, G, N, 0, K).items()}
        state[pre + "norm.weight"] = 1 + torch.randn(d_model, generator=g) * 0.3
    state["backbone.norm_f.weight"] = 1 + torch.randn(d_model, generator=g) * 0.3
    state["lm_head.weight"] = torch.randn(vocab_size, d_model, generator=g) * 0.5
    config = {
        "model_type": "mamba2", "hidden_size": d_model, "num_heads": H, "head_dim": P, "state_size": N, "n_groups": G,
        "expand": H * P // d_model, "conv_kernel": K, "num_hidden_layers": n_layer, "vocab_size": vocab_size,
        "layer_norm_epsilon": 1e-5, "residual_in_fp32": True, "tie_word_embeddings": False, "use_bias": False,
        "use_conv_bias": True, "time_step_limit": [0.0, {"__float__": "Infinity"}], "pgf_vocab": DNA_VOCAB,
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "model.safetensors"))
    return directory, config, state


def caduceus_mamba2_checkpoint(directory, layout="nested", rcps=True, n_layer=2, d_intermediate=0, seed=0,
                               fused=True, **shape):
    """A Caduceus directory with Mamba-2 mixers (PlantCaduceus vocabulary, 7 tokens padded to 8) in the
    `nested` (layer_cfg / norm_cfg) or `flat` (ssm_cfg "layer" / d_intermediate) layout; in/out
    projections and the LM head stored once (tied). Returns (directory, config, state)."""
    shape = MAMBA2_SHAPE | shape
    d = shape["d_model"]
    g = torch.Generator().manual_seed(seed)
    pre = "caduceus.backbone."
    table = pre + "embeddings.word_embeddings." + ("embedding.weight" if rcps else "weight")
    cmap = [PLANT_CMAP.get(i, i) for i in range(8)]
    state = {table: torch.randn(8, d, generator=g) * 0.5}
    if rcps:
        state[pre + "embeddings.word_embeddings.complement_map"] = torch.tensor(cmap)
        state["lm_head.complement_map"] = torch.tensor(cmap)
    hidden = -(-d_intermediate // 128) * 128
    for i in range(n_layer):
        mixer = f"{pre}layers.{i}.mixer." + ("submodule." if rcps else "")
        for direction in ("mamba_fwd", "mamba_rev"):
            weights = mamba2_mixer_weights(g, **shape)
            if direction == "mamba_rev":  # tied to mamba_fwd's: stored once
                weights = {k: v for k, v in weights.items() if not k.startswith(("in_proj", "out_proj"))}
            state |= {mixer + direction + "." + k: v for k, v in weights.items()}
        norm = f"{pre}layers.{i}.norm." + ("submodule." if rcps and not fused else "")
        state[norm + "weight"] = 1 + torch.randn(d, generator=g) * 0.3
        if d_intermediate:
            state[f"{pre}layers.{i}.norm2.weight"] = 1 + torch.randn(d, generator=g) * 0.3
            state[f"{pre}layers.{i}.mlp.fc1.weight"] = torch.randn(2 * hidden, d, generator=g) * d**-0.5
            state[f"{pre}layers.{i}.mlp.fc2.weight"] = torch.randn(d, hidden, generator=g) * hidden**-0.5
    state[pre + "norm_f." + ("submodule." if rcps and not fused else "") + "weight"] = 1 + torch.randn(d, generator=g) * 0.3
    common = {
        "model_type": "caduceus", "d_model": d, "n_layer": n_layer, "vocab_size": 7, "pad_vocab_size_multiple": 8,
        "residual_in_fp32": False, "bidirectional": True, "bidirectional_strategy": "add",
        "bidirectional_weight_tie": True, "rcps": rcps, "complement_map": {str(i): c for i, c in enumerate(cmap)},
    }
    ssm_cfg = mamba2_ssm_cfg(**shape)
    if layout == "nested":
        mamba_cfg = {"version": "v2", "ssm_cfg": ssm_cfg}
        if d_intermediate:
            mamba_cfg["mlp_cfg"] = {"hidden_features": d_intermediate}
        config = common | {
            "layer_cfg": {"mode": "mamba-only", "mamba_cfg": mamba_cfg},
            "norm_cfg": {"fused_add_norm": fused, "rms_norm": True, "norm_epsilon": 1e-5},
            "initializer_cfg": {"initializer_range": 0.02}, "gradient_checkpointing_stride": 1,
        }
    else:
        config = common | {"ssm_cfg": {"layer": "Mamba2", **ssm_cfg}, "d_intermediate": d_intermediate,
                           "rms_norm": True, "fused_add_norm": fused, "norm_epsilon": 1e-5}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "model.safetensors"))
    state["lm_head." + ("lm_head." if rcps else "") + "weight"] = state[table]
    return directory, config, state
