"""Retrieval and zero-shot metrics on embedding matrices (numpy only, no torch).

Kept torch-free so the same numbers come out whether the vectors were produced by the ONNX
runtime, by eager torch during training, or loaded from disk.

Scores are dot products computed in float64 (the vectors are unit norm, so they are cosines).
float64 keeps the ranking independent of BLAS summation order for all but exact ties.

Ties are broken deterministically: items are ranked by descending score and, among equal
scores, by ascending item index (what a stable sort of ``-score`` gives). The rank of item ``j``
for a query is therefore ``1 + #{score > s_j} + #{score == s_j and index < j}``. Exact ties are rare
with real models, but they do happen with degenerate ones (constant embeddings), and a metric
that changes between runs would hide that.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAP_CUTOFF = 10
_BLOCK_ELEMENTS = 1 << 24  # bound the (pairs x items) comparison matrices to ~16 M entries


def _matrix(x: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, dim), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or Inf")
    return array


def similarity(queries: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(Q, N) float64 dot products of every query row with every item row."""
    q, i = _matrix(queries, "queries"), _matrix(items, "items")
    if q.shape[1] != i.shape[1]:
        raise ValueError(f"dimension mismatch: {q.shape[1]} vs {i.shape[1]}")
    return q @ i.T


def relevant_ranks(scores: np.ndarray, query: np.ndarray, item: np.ndarray) -> np.ndarray:
    """1-based rank of ``item[p]`` in the ranking of query ``query[p]``, for every pair ``p``.

    Computed by counting (no full sort), so memory is bounded by blocks of pairs; the tie rule is
    the module's: higher score first, then lower item index.
    """
    scores = np.asarray(scores, dtype=np.float64)
    query, item = np.asarray(query, dtype=np.int64), np.asarray(item, dtype=np.int64)
    n_items = scores.shape[1]
    index = np.arange(n_items)
    out = np.empty(query.shape[0], dtype=np.int64)
    block = max(1, _BLOCK_ELEMENTS // max(n_items, 1))
    for start in range(0, query.shape[0], block):
        q, it = query[start : start + block], item[start : start + block]
        rows = scores[q]
        own = rows[np.arange(q.shape[0]), it][:, None]
        ahead = (rows > own) | ((rows == own) & (index[None, :] < it[:, None]))
        out[start : start + block] = ahead.sum(axis=1) + 1
    return out


def _ranking_summary(
    query: np.ndarray, ranks: np.ndarray, n_queries: int, ks: Sequence[int], cutoff: int
) -> dict[str, float]:
    """R@k, mAP@cutoff, mean and median first-relevant rank over queries 0..n_queries-1.

    Every query must own at least one (query, rank) pair.
    """
    order = np.lexsort((ranks, query))
    q, r = query[order], ranks[order]
    first_of_query = np.searchsorted(q, q, side="left")
    hit_number = np.arange(q.shape[0]) - first_of_query + 1  # 1st, 2nd, ... relevant hit
    n_relevant = np.bincount(q, minlength=n_queries)
    precision = np.where(r <= cutoff, hit_number / r, 0.0)
    ap = np.bincount(q, weights=precision, minlength=n_queries) / n_relevant
    first = r[hit_number == 1]  # rank of the first hit, per query
    out = {f"R@{k}": float(np.mean(first <= k)) for k in ks}
    out[f"mAP@{cutoff}"] = float(np.mean(ap))
    out["mean_rank"] = float(np.mean(first))
    out["median_rank"] = float(np.floor(np.median(first)))
    out["queries"] = int(n_queries)
    return out


def retrieval_metrics(
    audio_emb: np.ndarray,
    text_emb: np.ndarray,
    text_to_audio: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, dict[str, float]]:
    """Text->audio and audio->text retrieval over one gallery of clips and their captions.

    ``text_to_audio[t]`` is the row of ``audio_emb`` that caption ``t`` describes.

    * text->audio: every caption is a query with exactly one relevant clip.
    * audio->text: every clip that has captions is a query; all of its captions are relevant.
      Clips without captions stay in the text->audio gallery as distractors.

    Per direction: ``R@k`` (fraction of queries with a relevant item in the top k), ``mAP@10``,
    ``mean_rank`` and ``median_rank`` of the FIRST relevant item (1-based; the median is floored
    for an even number of queries, as laion_clap's ``np.floor(np.median(preds)) + 1`` on 0-based
    ranks), and ``queries``.

    mAP@10 is the mean over queries of ``AP@10 = (1/R) * sum_{i: r_i <= 10} i / r_i`` where
    ``r_1 < r_2 < ...`` are the ranks of the query's relevant items in increasing order (so
    ``i / r_i`` is the precision at the i-th hit) and ``R`` is the number of relevant items (1 for
    text->audio, the clip's caption count for audio->text). Relevant items ranked below 10 count 0.
    This follows laion_clap (``src/laion_clap/training/train.py``): ``get_metrics`` and the
    text->audio half of ``evaluate_clotho_audiocaps`` compute ``mean(1/rank if rank <= 10 else 0)``
    (R = 1), and its audio->text mAP@10 computes ``sum(arange(1, n+1) / ranks_within_10) / 5``
    with 5 captions per clip, adapted from XinhaoMei/audio-text_retrieval (``tools/utils.py``),
    which sorts the ranks first as done here. (laion_clap's own line does not sort; its
    ``torch.where`` yields the ranks in caption order, which matches the sorted definition only
    when the captions come out ranked in their stored order.) R is the clip's actual caption
    count, so clips with other than 5 captions are handled.
    """
    audio, text = _matrix(audio_emb, "audio_emb"), _matrix(text_emb, "text_emb")
    owner = np.asarray(text_to_audio, dtype=np.int64)
    if owner.shape != (text.shape[0],):
        raise ValueError(f"text_to_audio must have one entry per caption ({text.shape[0]}), got {owner.shape}")
    if text.shape[0] == 0:
        raise ValueError("no captions to evaluate")
    if owner.min() < 0 or owner.max() >= audio.shape[0]:
        raise ValueError("text_to_audio refers to a clip index outside audio_emb")
    scores = similarity(text, audio)  # (Nt, Na)
    t2a_ranks = relevant_ranks(scores, np.arange(text.shape[0]), owner)
    t2a = _ranking_summary(np.arange(text.shape[0]), t2a_ranks, text.shape[0], ks, MAP_CUTOFF)

    clips_with_text = np.unique(owner)  # query ids for audio->text, sorted
    query_of_caption = np.searchsorted(clips_with_text, owner)
    a2t_scores = scores.T[clips_with_text]  # the same numbers, transposed
    a2t_ranks = relevant_ranks(a2t_scores, query_of_caption, np.arange(text.shape[0]))
    a2t = _ranking_summary(query_of_caption, a2t_ranks, clips_with_text.shape[0], ks, MAP_CUTOFF)
    return {"text_to_audio": t2a, "audio_to_text": a2t}


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Accuracy within each class that has at least one example (class index -> accuracy)."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    out: dict[int, float] = {}
    for k in range(num_classes):
        members = labels == k
        if members.any():
            out[k] = float(np.mean(predicted[members] == k))
    return out


def _labels(labels: np.ndarray, n: int, num_classes: int) -> np.ndarray:
    array = np.asarray(labels)
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be {n} integers, got shape {array.shape} dtype {array.dtype}")
    if n and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    return array.astype(np.int64)


def zero_shot_metrics(
    audio_emb: np.ndarray,
    class_text_emb: np.ndarray,
    labels: np.ndarray,
    ks: Sequence[int] = (1, 5),
) -> dict:
    """Single-label zero-shot classification: each clip's class is the best-scoring class text.

    Returns ``top{k}`` accuracy for each k (the true class ranked within the first k classes,
    same tie rule as retrieval; k >= K gives 1.0), ``per_class`` (class index -> accuracy, for
    classes with examples), ``support`` (class index -> number of clips), ``mean_per_class``
    (the unweighted mean of ``per_class``: balanced accuracy) and ``clips``.
    """
    scores = similarity(audio_emb, class_text_emb)  # (N, K)
    n, k_classes = scores.shape
    if n == 0:
        raise ValueError("no clips to classify")
    y = _labels(labels, n, k_classes)
    ranks = relevant_ranks(scores, np.arange(n), y)
    per_class = per_class_accuracy(np.where(ranks == 1, y, -1), y, k_classes)
    out: dict = {f"top{k}": float(np.mean(ranks <= k)) for k in ks}
    out["per_class"] = per_class
    out["support"] = {k: int(c) for k, c in enumerate(np.bincount(y, minlength=k_classes)) if c}
    out["mean_per_class"] = float(np.mean(list(per_class.values())))
    out["clips"] = int(n)
    return out


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Non-interpolated AP of one class: ``sum_n (recall_n - recall_{n-1}) * precision_n``.

    Thresholds run over the distinct scores, so clips with tied scores enter together and the
    result does not depend on their order (as ``sklearn.metrics.average_precision_score``, the
    AudioSet/PANNs evaluation). NaN when there are no positives.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positives, dtype=bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    seen = np.arange(1, y.shape[0] + 1)
    group_end = np.r_[s[1:] != s[:-1], True]  # last position of each distinct score
    tp, seen = tp[group_end], seen[group_end]
    recall = tp / n_pos
    precision = tp / seen
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def zero_shot_multilabel(audio_emb: np.ndarray, class_text_emb: np.ndarray, targets: np.ndarray) -> dict:
    """Multi-label zero-shot tagging: ``mAP`` = mean over classes of :func:`average_precision` of
    the clip scores for that class (AudioSet-style, class-wise, macro average).

    Classes without any positive clip have no defined AP; they are left out of the mean and
    listed in ``classes_without_positives``. Also returns ``per_class_ap`` (class index -> AP)
    and ``clips``.
    """
    scores = similarity(audio_emb, class_text_emb)  # (N, K)
    y = np.asarray(targets, dtype=bool)
    if y.shape != scores.shape:
        raise ValueError(f"targets must be (clips, classes) = {scores.shape}, got {y.shape}")
    per_class = {k: average_precision(scores[:, k], y[:, k]) for k in range(scores.shape[1])}
    scored = {k: ap for k, ap in per_class.items() if not np.isnan(ap)}
    if not scored:
        raise ValueError("no class has a positive clip")
    return {
        "mAP": float(np.mean(list(scored.values()))),
        "per_class_ap": scored,
        "classes_without_positives": [k for k in per_class if k not in scored],
        "clips": int(scores.shape[0]),
    }
