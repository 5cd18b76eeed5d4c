"""Per-base scores from a gradient, checked on hand-made numbers."""

import numpy as np
import pytest

from pgf.io.onehot import one_hot
from pgf.workflows.methods import METHODS, score_gradient

GRADIENT = np.array(
    [
        [1.0, 2.0, 3.0, 4.0],  # A observed
        [0.5, -0.5, 0.0, 2.0],  # T observed
        [3.0, 0.0, 4.0, 0.0],  # N: no observed base
        [-1.0, -1.0, -1.0, 3.0],  # G observed
    ],
    dtype=np.float32,
)
ONEHOT = one_hot("ATNG")


def test_gradient_norm():
    score = score_gradient(GRADIENT, ONEHOT, "gradient").score
    np.testing.assert_allclose(score[[0, 1, 3]], [np.sqrt(30), np.sqrt(4.5), np.sqrt(12)], rtol=1e-6)
    assert np.isnan(score[2])


def test_input_x_gradient():
    score = score_gradient(GRADIENT, ONEHOT, "input-x-gradient").score
    np.testing.assert_array_equal(score[[0, 1, 3]], [1.0, 2.0, -1.0])
    assert np.isnan(score[2]) and score.dtype == np.float32


def test_hypothetical():
    scores = score_gradient(GRADIENT, ONEHOT, "hypothetical")
    expected = GRADIENT - GRADIENT.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(scores.extras["hypothetical"], expected, rtol=1e-6)
    np.testing.assert_allclose(scores.score[[0, 1, 3]], [1 - 2.5, 2 - 0.5, -1 - 0], rtol=1e-6)
    assert np.isnan(scores.score[2])


def test_taylor_ism():
    scores = score_gradient(GRADIENT, ONEHOT, "taylor-ism")
    effects, alts = scores.extras["taylor_ism"], scores.extras["taylor_ism_alt"]
    # position 0, ref A: alternatives C, G, T
    np.testing.assert_array_equal(effects[0], [1.0, 2.0, 3.0])
    assert alts[0].tolist() == [b"C", b"G", b"T"]
    # position 1, ref T: alternatives A, C, G
    np.testing.assert_array_equal(effects[1], [-1.5, -2.5, -2.0])
    assert alts[1].tolist() == [b"A", b"C", b"G"]
    assert np.isnan(effects[2]).all()
    # position 3, ref G: effects A 0, C 0, T 4
    np.testing.assert_allclose(scores.score[[0, 1, 3]], [2.0, 2.0, 4.0 / 3.0], rtol=1e-6)


def test_unknown_method():
    assert set(METHODS) == {"gradient", "input-x-gradient", "hypothetical", "taylor-ism"}
    with pytest.raises(ValueError):
        score_gradient(GRADIENT, ONEHOT, "shap")
