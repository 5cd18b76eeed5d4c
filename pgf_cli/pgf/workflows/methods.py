"""Per-base scores from one gradient g = d f / d onehot (L, 4), columns A C G T.

    gradient          ||g[l]||_2 over the 4 bases
    input-x-gradient  g[l, observed base]                                (default)
    hypothetical      h = g - mean_b g[l, b]; score h[l, observed base];
                      h is stored as dataset `hypothetical` (L, 4) (TF-MoDISco input)
    taylor-ism        effect of each SNV to first order: g[l, alt] - g[l, ref]
                      for the 3 alternatives, stored as dataset `taylor_ism` (L, 3)
                      (alternatives = the other bases in A C G T order);
                      score = mean |effect|

Positions without an observed base (N, IUPAC codes) have NaN scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pgf.io.onehot import BASES

METHODS = ("gradient", "input-x-gradient", "hypothetical", "taylor-ism")
DEFAULT_METHOD = "input-x-gradient"

# ALT_INDEX[ref] = the three other base indices in A C G T order
ALT_INDEX = np.array([[b for b in range(4) if b != ref] for ref in range(4)], dtype=np.int64)


@dataclass
class Scores:
    score: np.ndarray  # (L,) float32, NaN where masked
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    extra_attributes: dict[str, dict[str, object]] = field(default_factory=dict)


def score_gradient(gradient: np.ndarray, onehot: np.ndarray, method: str) -> Scores:
    """Compute `method`'s per-base score (and extra datasets) from a gradient."""
    g = np.asarray(gradient, dtype=np.float32)
    observed = onehot.sum(axis=1) > 0
    reference = np.argmax(onehot, axis=1)
    rows = np.arange(g.shape[0])
    if method == "gradient":
        score = np.sqrt(np.sum(g * g, axis=1, dtype=np.float32))
        result = Scores(score)
    elif method == "input-x-gradient":
        result = Scores(g[rows, reference].copy())
    elif method == "hypothetical":
        hypothetical = g - g.mean(axis=1, keepdims=True, dtype=np.float32)
        result = Scores(
            hypothetical[rows, reference].copy(),
            {"hypothetical": hypothetical.astype(np.float32)},
            {"hypothetical": {"columns": "A,C,G,T", "definition": "gradient minus its mean over the 4 bases"}},
        )
    elif method == "taylor-ism":
        alternatives = ALT_INDEX[reference]  # (L, 3)
        effects = g[rows[:, None], alternatives] - g[rows, reference][:, None]
        effects[~observed] = np.nan
        score = np.mean(np.abs(effects), axis=1, dtype=np.float32)
        alt_letters = np.array(list(BASES), dtype="S1")[alternatives]
        alt_letters[~observed] = b"N"
        result = Scores(
            score,
            {"taylor_ism": effects.astype(np.float32), "taylor_ism_alt": alt_letters},
            {"taylor_ism": {"definition": "g[alt] - g[ref]; alternatives in taylor_ism_alt (other bases in A,C,G,T order)"}},
        )
    else:
        raise ValueError(f"unknown method {method!r}")
    result.score = np.asarray(result.score, dtype=np.float32)
    result.score[~observed] = np.nan
    return result
