"""Small test helpers shared by several test files (importable as `helpers`: pytest's rootdir
insertion puts tests/ on the import path; no sys.path edits)."""

from pathlib import Path

import numpy as np
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
