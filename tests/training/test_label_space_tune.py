"""The calibration fit behind manifest.score_calibration: recovers a known logistic, weighted."""

from __future__ import annotations

import numpy as np

from training.label_space_tune import _fit_logistic, same_label_top1


def test_newton_fit_recovers_a_known_logistic():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20_000, 2))
    feats = np.column_stack([x, np.ones(len(x))])
    truth = np.array([2.0, -1.0, 0.5])
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-(feats @ truth)))).astype(float)
    theta = _fit_logistic(feats, y, np.full(len(x), 1 / len(x)))
    assert np.allclose(theta, truth, atol=0.1)
    pinned = feats.copy()
    pinned[:, 1] = 0.0
    theta = _fit_logistic(pinned, y, np.full(len(x), 1 / len(x)), ridge=np.diag([0.0, 1.0, 0.0]))
    assert theta[1] == 0.0


def test_same_label_top1_counts_nearest_other_clip():
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert same_label_top1(vectors, ["a", "a", "b", "b"]) == 1.0
    assert same_label_top1(vectors, ["a", "b", "a", "b"]) == 0.0
