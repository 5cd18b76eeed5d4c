"""Caduceus config.json, in the two public layouts, read into one `CaduceusConfig`.

Flat (the published Mamba-1 checkpoints, and MambaConfig-style Mamba-2 ones): top-level
`rms_norm`, `fused_add_norm`, `norm_epsilon`, `ssm_cfg` (its `"layer"`: "Mamba1", the default,
or "Mamba2") and `d_intermediate` (> 0: a GatedMLP of that width rounded up to 128).

Nested (the Caduceus branch with Mamba-2 support): `layer_cfg` = {`mode`: "mamba-only",
`mamba_cfg`: {`version`: "v1" | "v2", `ssm_cfg`, `mlp_cfg` (GatedMLP arguments:
`hidden_features`, `multiple_of`, `bias`)}} and `norm_cfg` = {`fused_add_norm`, `rms_norm`,
`norm_epsilon`}. A missing `version` is read from the weights (Mamba-2 mixers have `dt_bias`).
Other keys of these nested objects (Hugging Face config boilerplate) are not read.

The mixer arguments in `ssm_cfg` are checked by `mixer_from_ssm_cfg`: an unknown key or value is
a ValueError naming it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pgf.models.mamba_ssm_lm import mixer_from_ssm_cfg, mlp_width

_MLP_ARGUMENTS = {"hidden_features", "multiple_of", "bias"}


@dataclass(frozen=True)
class CaduceusConfig:
    """The config.json keys pgf reads (published names and defaults), both layouts flattened."""

    d_model: int = 256
    n_layer: int = 16
    vocab_size: int = 12
    pad_vocab_size_multiple: int = 8
    ssm_cfg: dict = field(default_factory=dict)
    rms_norm: bool = True
    fused_add_norm: bool = True
    residual_in_fp32: bool = False
    norm_epsilon: float = 1e-5
    bidirectional: bool = True
    bidirectional_strategy: str = "add"
    bidirectional_weight_tie: bool = True
    rcps: bool = False
    complement_map: dict | None = None
    mixer_layer: str = "Mamba1"  # "Mamba1" or "Mamba2"
    mlp_hidden: int = 0  # the GatedMLP's hidden width after rounding (0: no MLP)
    mlp_bias: bool = False

    @classmethod
    def from_dict(cls, data: dict, weight_names: Iterable[str] = ()) -> "CaduceusConfig":
        """Either layout; `weight_names` (the checkpoint's keys) settle a nested config's missing
        `version`. A ValueError names the first field pgf does not understand."""
        names = cls.__dataclass_fields__
        flat = {k: v for k, v in data.items() if k in names and k not in ("mixer_layer", "mlp_hidden", "mlp_bias")}
        if "layer_cfg" in data or "norm_cfg" in data:
            flat.update(_nested(data, weight_names))
        else:
            ssm_cfg = dict(_object(data.get("ssm_cfg"), "ssm_cfg"))
            flat["mixer_layer"] = ssm_cfg.pop("layer", "Mamba1")
            flat["ssm_cfg"] = ssm_cfg
            d_intermediate = data.get("d_intermediate", 0)
            if not isinstance(d_intermediate, int) or isinstance(d_intermediate, bool) or d_intermediate < 0:
                raise ValueError(f"d_intermediate = {d_intermediate!r} is not understood")
            flat["mlp_hidden"] = mlp_width(d_intermediate, data.get("d_model", 256)) if d_intermediate else 0
        config = cls(**flat)
        if config.rcps and not config.complement_map:
            raise ValueError("rcps models need a complement_map")
        if config.rcps and config.mlp_hidden:
            raise ValueError("a GatedMLP (d_intermediate / mlp_cfg) in an rcps model is not supported: "
                             "no published RC-equivariant block has one")
        config.mixer()  # refuse an ssm_cfg pgf does not understand now
        return config

    @property
    def padded_vocab_size(self) -> int:
        multiple = self.pad_vocab_size_multiple or 1
        return -(-self.vocab_size // multiple) * multiple

    def complement_ids(self) -> list[int]:
        """complement_map as a list over the padded vocabulary (identity where unspecified)."""
        mapping = {int(k): int(v) for k, v in (self.complement_map or {}).items()}
        return [mapping.get(i, i) for i in range(self.padded_vocab_size)]

    def mixer(self) -> tuple[type, dict]:
        """(the mixer class of each direction, its keyword arguments)."""
        return mixer_from_ssm_cfg(self.ssm_cfg, self.mixer_layer)


def _nested(data: dict, weight_names: Iterable[str]) -> dict:
    """The flat fields of a nested (`layer_cfg` / `norm_cfg`) config."""
    layer_cfg = _object(data.get("layer_cfg"), "layer_cfg")
    mode = layer_cfg.get("mode", "mamba-only")
    if mode != "mamba-only":
        raise ValueError(f"layer_cfg.mode {mode!r} is not understood (pgf knows 'mamba-only')")
    mamba_cfg = _object(layer_cfg.get("mamba_cfg"), "layer_cfg.mamba_cfg")
    version = mamba_cfg.get("version")
    if version is None:
        version = _version_from_weights(weight_names)
    if version not in ("v1", "v2"):
        raise ValueError(f"layer_cfg.mamba_cfg.version {version!r} is not understood (pgf knows 'v1' and 'v2')")
    ssm_cfg = _object(mamba_cfg.get("ssm_cfg"), "layer_cfg.mamba_cfg.ssm_cfg")
    if "layer" in ssm_cfg:
        raise ValueError("layer_cfg.mamba_cfg.ssm_cfg key 'layer' is not understood (the version says the mixer)")
    layer = "Mamba2" if version == "v2" else "Mamba1"
    mixer_from_ssm_cfg(ssm_cfg, layer, where="layer_cfg.mamba_cfg.ssm_cfg")  # its errors name the nested path
    norm_cfg = _object(data.get("norm_cfg"), "norm_cfg")
    flat = {
        "mixer_layer": layer,
        "ssm_cfg": ssm_cfg,
        **{key: norm_cfg[key] for key in ("fused_add_norm", "rms_norm", "norm_epsilon") if key in norm_cfg},
    }
    mlp_cfg = mamba_cfg.get("mlp_cfg")
    if mlp_cfg is not None:
        mlp_cfg = _object(mlp_cfg, "layer_cfg.mamba_cfg.mlp_cfg")
        unknown = sorted(set(mlp_cfg) - _MLP_ARGUMENTS)
        if unknown:
            raise ValueError(f"layer_cfg.mamba_cfg.mlp_cfg key {unknown[0]!r} is not understood")
        flat["mlp_hidden"] = mlp_width(mlp_cfg.get("hidden_features"), data.get("d_model", 256),
                                       mlp_cfg.get("multiple_of", 128))
        flat["mlp_bias"] = bool(mlp_cfg.get("bias", False))
    return flat


def _object(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object, not {value!r}")
    return value


def _version_from_weights(weight_names: Iterable[str]) -> str:
    """"v2" when the mixers have Mamba-2's dt_bias, "v1" when they have Mamba-1's x_proj."""
    names = list(weight_names)
    if any(name.endswith(".dt_bias") for name in names):
        return "v2"
    if any(name.endswith(".x_proj.weight") for name in names):
        return "v1"
    raise ValueError("layer_cfg.mamba_cfg.version is not stated (and the weights do not say which Mamba)")
