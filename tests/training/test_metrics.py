"""Metrics checked against numbers worked out by hand.

Trick used throughout: with ``audio_emb = I`` (or ``class_text_emb = I``) the score matrix is the
other embedding matrix itself, so each test writes the scores it wants directly.
"""

from __future__ import annotations

import numpy as np
import pytest

from training.linear_probe import fit_linear_probe, run_linear_probe
from training.metrics import (
    average_precision,
    relevant_ranks,
    retrieval_metrics,
    zero_shot_metrics,
    zero_shot_multilabel,
)


def _retrieval(scores, owner):
    """scores[t, a] = similarity of caption t and clip a."""
    scores = np.asarray(scores, dtype=float)
    return retrieval_metrics(np.eye(scores.shape[1]), scores, np.asarray(owner))


def test_retrieval_small_case_by_hand():
    # 3 clips, 4 captions; captions 0 and 1 describe clip 0, caption 2 clip 1, caption 3 clip 2.
    scores = [
        [0.9, 0.1, 0.2],  # t0: clip 0 first                   -> rank 1
        [0.3, 0.8, 0.5],  # t1: 0.8 (c1), 0.5 (c2), 0.3 (c0)   -> rank 3
        [0.7, 0.6, 0.1],  # t2: 0.7 (c0), 0.6 (c1)             -> rank 2
        [0.2, 0.4, 0.9],
    ]  # t3: clip 2 first                   -> rank 1
    m = _retrieval(scores, [0, 0, 1, 2])
    t2a = m["text_to_audio"]
    # ranks [1, 3, 2, 1]
    assert t2a["R@1"] == 0.5 and t2a["R@5"] == 1.0 and t2a["R@10"] == 1.0
    assert t2a["mAP@10"] == pytest.approx((1 + 1 / 3 + 1 / 2 + 1) / 4)  # 0.708333
    assert t2a["mean_rank"] == 1.75
    assert t2a["median_rank"] == 1.0  # median of [1,1,2,3] is 1.5, floored like laion_clap
    assert t2a["queries"] == 4
    # audio->text, columns of the score matrix:
    # c0: [t0 .9, t1 .3, t2 .7, t3 .2] -> order t0 t2 t1 t3; relevant t0, t1 at ranks 1, 3
    #     AP = (1/2) * (1/1 + 2/3) = 0.83333
    # c1: [.1, .8, .6, .4] -> order t1 t2 t3 t0; relevant t2 at rank 2 -> AP 1/2
    # c2: [.2, .5, .1, .9] -> order t3 t1 t0 t2; relevant t3 at rank 1 -> AP 1
    a2t = m["audio_to_text"]
    assert a2t["R@1"] == pytest.approx(2 / 3) and a2t["R@5"] == 1.0
    assert a2t["mAP@10"] == pytest.approx((5 / 6 + 1 / 2 + 1) / 3)  # 0.777778
    assert a2t["mean_rank"] == pytest.approx(4 / 3)
    assert a2t["median_rank"] == 1.0
    assert a2t["queries"] == 3


def test_retrieval_ties_break_by_lower_index():
    # Both captions score both clips 0.5: clip 0 always ranks first.
    m = _retrieval([[0.5, 0.5], [0.5, 0.5]], [1, 0])
    # t0 -> clip 1 is ranked 2nd; t1 -> clip 0 is ranked 1st
    assert m["text_to_audio"]["R@1"] == 0.5
    assert m["text_to_audio"]["mAP@10"] == pytest.approx((1 / 2 + 1) / 2)
    # c0 over [t0, t1]: tie -> t0 first, relevant t1 at rank 2; c1: relevant t0 at rank 1
    assert m["audio_to_text"]["mean_rank"] == 1.5
    # the same answer whatever the float rounding of equal dot products: computed twice, identical
    assert m == _retrieval([[0.5, 0.5], [0.5, 0.5]], [1, 0])


def test_retrieval_clip_with_five_captions_and_cutoff():
    # Clip 0 owns captions 0..4; clips 1..10 own one caption each (captions 5..14).
    # Column 0 puts clip 0's captions at ranks 1, 3, 6, 10 and 12 of 15.
    order = [0, 5, 1, 6, 7, 2, 8, 9, 10, 3, 11, 4, 12, 13, 14]  # caption at rank 1, 2, ...
    scores = np.zeros((15, 11))
    for position, caption in enumerate(order, start=1):
        scores[caption, 0] = (16 - position) / 16  # in (0, 1), decreasing
    for clip in range(1, 11):
        scores[4 + clip, clip] = 1.0  # every other caption: own clip first
    owner = [0] * 5 + list(range(1, 11))
    m = _retrieval(scores, owner)
    # text->audio is perfect: clip 0 is the only positive score for captions 0..4, and 1.0 beats
    # every column-0 value for captions 5..14.
    assert m["text_to_audio"] == _uniform(1.0, rank=1.0, queries=15)
    # clip 0: AP@10 = (1/5) * (1/1 + 2/3 + 3/6 + 4/10); the 5th caption (rank 12) adds nothing.
    ap0 = (1 + 2 / 3 + 3 / 6 + 4 / 10) / 5  # 0.513333
    a2t = m["audio_to_text"]
    assert a2t["mAP@10"] == pytest.approx((ap0 + 10 * 1.0) / 11)
    assert a2t["R@1"] == 1.0 and a2t["mean_rank"] == 1.0 and a2t["queries"] == 11


def _uniform(recall: float, rank: float, queries: int) -> dict:
    """Retrieval metrics where every query has the same ``rank``: R@k and mAP@10 all ``recall``."""
    return {
        **dict.fromkeys(("R@1", "R@5", "R@10", "mAP@10"), recall),
        "mean_rank": rank,
        "median_rank": rank,
        "queries": queries,
    }


def test_retrieval_perfect_and_worst():
    n = 12
    perfect = _retrieval(np.eye(n), np.arange(n))
    for direction in perfect.values():
        assert direction == _uniform(1.0, rank=1.0, queries=n)
    worst = _retrieval(-np.eye(n), np.arange(n))  # the relevant clip scores -1, all others 0
    for direction in worst.values():
        assert direction == _uniform(0.0, rank=12.0, queries=n)
    small = _retrieval(-np.eye(4), np.arange(4))["text_to_audio"]  # last of 4: inside the top 5 and 10
    assert small["R@1"] == 0.0 and small["R@5"] == 1.0 and small["mAP@10"] == 0.25


def test_relevant_ranks_match_a_stable_sort():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(30, 17)).astype(float)  # many exact ties
    query = np.repeat(np.arange(30), 3)
    item = rng.integers(0, 17, size=90)
    order = np.argsort(-scores, axis=1, kind="stable")
    expected = np.array([int(np.where(order[q] == i)[0][0]) + 1 for q, i in zip(query, item)])
    np.testing.assert_array_equal(relevant_ranks(scores, query, item), expected)


def test_retrieval_rejects_bad_input():
    with pytest.raises(ValueError):
        retrieval_metrics(np.eye(2), np.eye(2), np.array([0, 2]))
    with pytest.raises(ValueError):
        retrieval_metrics(np.eye(2), np.full((2, 2), np.nan), np.array([0, 1]))


def test_zero_shot_by_hand():
    # 5 clips, 3 classes (class_text_emb = I, so rows are the class scores)
    scores = np.array(
        [
            [0.9, 0.1, 0.0],  # label 0: rank 1
            [0.2, 0.7, 0.1],  # label 0: rank 2
            [0.3, 0.6, 0.1],  # label 1: rank 1
            [0.5, 0.4, 0.45],  # label 2: 0.5, 0.45 -> rank 2
            [0.1, 0.2, 0.8],
        ]
    )  # label 2: rank 1
    m = zero_shot_metrics(scores, np.eye(3), np.array([0, 0, 1, 2, 2]), ks=(1, 2, 5))
    assert m["top1"] == 0.6 and m["top2"] == 1.0 and m["top5"] == 1.0  # k >= K: always a hit
    assert m["per_class"] == {0: 0.5, 1: 1.0, 2: 0.5}
    assert m["mean_per_class"] == pytest.approx(2 / 3)
    assert m["support"] == {0: 2, 1: 1, 2: 2}
    assert m["clips"] == 5
    # A tie between classes 0 and 1: class 0 wins.
    tie = zero_shot_metrics(np.array([[0.5, 0.5], [0.5, 0.5]]), np.eye(2), np.array([0, 1]))
    assert tie["per_class"] == {0: 1.0, 1: 0.0} and tie["top1"] == 0.5
    # a class without examples is absent from per_class and the mean
    missing = zero_shot_metrics(np.eye(3)[:2], np.eye(3), np.array([0, 1]))
    assert missing["per_class"] == {0: 1.0, 1: 1.0} and missing["mean_per_class"] == 1.0


def test_average_precision_by_hand():
    # positives at ranks 1 and 3 of 4: (1/2) * (1/1 + 2/3)
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # a tie at the top between a negative and the only positive: one threshold, precision 1/2
    assert average_precision([0.5, 0.5, 0.1], [0, 1, 0]) == 0.5
    assert average_precision([0.5, 0.5, 0.1], [1, 0, 0]) == 0.5  # order inside the tie is irrelevant
    assert average_precision([0.1, 0.2], [1, 1]) == 1.0
    assert np.isnan(average_precision([0.1, 0.2], [0, 0]))


def test_zero_shot_multilabel_by_hand():
    scores = np.array([[0.9, 0.5, 0.3], [0.8, 0.5, 0.2], [0.7, 0.1, 0.1], [0.6, 0.2, 0.0]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=bool)
    m = zero_shot_multilabel(scores, np.eye(3), targets)
    # class 0: AP 5/6 (above); class 1: tie 0.5/0.5 with one positive -> 1/2; class 2: no positive
    assert m["per_class_ap"] == {0: pytest.approx(5 / 6), 1: 0.5}
    assert m["mAP"] == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert m["classes_without_positives"] == [2]


def test_average_precision_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for _ in range(20):
        scores = rng.integers(0, 6, size=40) / 5.0  # ties
        positives = rng.random(40) < 0.3
        if positives.any():
            assert average_precision(scores, positives) == pytest.approx(
                metrics.average_precision_score(positives, scores)
            )


# ----------------------------------------------------------------------------- linear probe
def _blobs(rng, n_per_class, centres, noise):
    x = np.concatenate([c + noise * rng.standard_normal((n_per_class, centres.shape[1])) for c in centres])
    y = np.repeat(np.arange(len(centres)), n_per_class)
    return x / np.linalg.norm(x, axis=1, keepdims=True), y


def test_linear_probe_separable():
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 16))
    train_x, train_y = _blobs(rng, 30, centres, 0.1)
    val_x, val_y = _blobs(rng, 10, centres, 0.1)
    test_x, test_y = _blobs(rng, 20, centres, 0.1)
    result = run_linear_probe(train_x, train_y, test_x, test_y, val_x=val_x, val_y=val_y, weight_decays=(1e-4, 1e-2))
    assert result.train_accuracy == 1.0 and result.test_accuracy == 1.0
    assert result.per_class_accuracy == {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}
    assert set(result.validation_accuracy) == {1e-4, 1e-2}
    assert result.weight_decay == 1e-2  # both perfect on val: the larger decay wins
    again = run_linear_probe(train_x, train_y, test_x, test_y, val_x=val_x, val_y=val_y, weight_decays=(1e-4, 1e-2))
    assert again == result  # deterministic


def test_linear_probe_random_labels_is_near_chance():
    pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((600, 24))
    y = rng.integers(0, 4, size=600)
    result = run_linear_probe(x[:300], y[:300], x[300:], y[300:], weight_decay=1e-3)
    assert result.train_accuracy > result.test_accuracy
    assert abs(result.test_accuracy - 0.25) < 0.1


def test_linear_probe_predict_and_validation():
    pytest.importorskip("torch")
    probe = fit_linear_probe(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]), 2, weight_decay=1e-3)
    np.testing.assert_array_equal(probe.predict(np.array([[2.0, 0.0], [0.0, 3.0]])), [0, 1])
    with pytest.raises(ValueError):
        fit_linear_probe(np.zeros((2, 2)), np.array([0, 5]), 2)
