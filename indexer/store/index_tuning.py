"""How good an approximate index is, and how hard it must search: exact top-k of the tuning
queries, recall@k against it, and the nprobe autotuner ``VectorIndex.build`` runs.

Kept apart from ``vector_index`` so that the benchmarks and tests measure recall with the very
function the autotuner uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

EXACT_BLOCK = 65_536  # rows per brute-force block while tracking the tuning queries' top-k
SELF_TOL = 1e-5  # a tuning query whose best exact score is its own norm^2 is in the index
# Quantised codes stop climbing the ladder once two steps each gain less than this much recall.
PLATEAU_GAIN = 0.002

SearchFn = Callable[[np.ndarray, int, dict], tuple[np.ndarray, np.ndarray]]


class ExactTopK:
    """Running exact top-k of a few queries over vectors seen batch by batch (brute force, merge)."""

    def __init__(self, queries: np.ndarray, k: int):
        self.queries, self.k = queries, k
        self.scores = np.full((len(queries), k), -np.inf, np.float32)
        self.ids = np.full((len(queries), k), -1, np.int64)

    def update(self, ids: np.ndarray, x: np.ndarray) -> None:
        for lo in range(0, len(ids), EXACT_BLOCK):
            s = self.queries @ x[lo : lo + EXACT_BLOCK].T
            block_ids = ids[lo : lo + EXACT_BLOCK]
            if s.shape[1] > self.k:
                part = np.argpartition(-s, self.k - 1, axis=1)[:, : self.k]
                s, cand = np.take_along_axis(s, part, 1), block_ids[part]
            else:
                cand = np.broadcast_to(block_ids, s.shape)
            all_s = np.concatenate([self.scores, s], 1)
            all_i = np.concatenate([self.ids, cand], 1)
            order = np.argsort(-all_s, axis=1, kind="stable")[:, : self.k]
            self.scores = np.take_along_axis(all_s, order, 1)
            self.ids = np.take_along_axis(all_i, order, 1)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int, exclude: np.ndarray | None = None) -> float:
    """Share of the exact top-k found in the approximate top-k, over all queries (-1 slots ignored).

    ``exclude[j]`` (an id or -1) is dropped from both lists first: a query taken from the
    collection finds itself, which would inflate recall.
    """
    hits, total = recall_counts(approx_ids, exact_ids, k, exclude)
    return float(hits.sum() / total.sum()) if total.sum() else 1.0


def recall_counts(approx_ids, exact_ids, k, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """Per query: how many of the exact top-k the approximate list holds, and how many there were."""
    hits, total = np.zeros(len(exact_ids)), np.zeros(len(exact_ids))
    for j in range(len(exact_ids)):
        drop = -1 if exclude is None else exclude[j]
        exact = [i for i in exact_ids[j] if i >= 0 and i != drop][:k]
        approx = [i for i in approx_ids[j] if i >= 0 and i != drop][:k]
        hits[j], total[j] = len(set(approx).intersection(exact)), len(exact)
    return hits, total


def ladder(nlist: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, ...: doubling, with a half step between powers of two; ends at nlist."""
    steps, p = [], 1
    while p < nlist:
        steps += [p] + ([p * 3 // 2] if p >= 2 and p * 3 // 2 < nlist else [])
        p *= 2
    return steps + [nlist]


def exact_tuning(k: int) -> dict:
    return {"exact": True, "k": k, "recall": 1.0, f"recall_at_{k}": 1.0}


def autotune_nprobe(
    search: SearchFn, exact: ExactTopK, *, nlist: int, k: int, target: float, lossless: bool, ntotal: int
) -> tuple[int, dict]:
    """Smallest nprobe on a doubling ladder whose recall@k on the tuning queries reaches ``target``
    (by one standard error: the mean over queries minus its standard error). Returns it and the
    tuning record saved with the index.

    ``search(queries, k, {"nprobe": p})`` is the index's own search; ``lossless`` says its codes
    are full vectors (recall then reaches 1.0 at nprobe = nlist, so the ladder never stops early).
    """
    out: dict[str, Any] = {"target_recall": target, "k": k, "queries": len(exact.queries)}
    if not len(exact.queries) or ntotal == 0:
        nprobe = min(nlist, 16)
        return nprobe, out | {
            "nprobe": nprobe,
            "reached": None,
            "note": "not tuned: no tuning queries or no vectors; nprobe left at a default",
        }
    norms = np.einsum("ij,ij->i", exact.queries, exact.queries)
    is_self = exact.scores[:, 0] >= norms - SELF_TOL * np.maximum(norms, 1.0)
    exclude = np.where(is_self, exact.ids[:, 0], -1)
    tried: list[dict] = []
    gains: list[float] = []
    for nprobe in ladder(nlist):
        _, found = search(exact.queries, k + 1, {"nprobe": nprobe})
        hits, total = recall_counts(found, exact.ids, k, exclude)
        recall = float(hits.sum() / max(total.sum(), 1))
        per_query = hits[total > 0] / total[total > 0]
        se = float(per_query.std(ddof=1) / np.sqrt(len(per_query))) if len(per_query) > 1 else 0.0
        tried.append({"nprobe": nprobe, "recall": round(recall, 4), "se": round(se, 4)})
        # Reached: recall one standard error above the target, so that the held-out recall
        # lands at the target despite the 200-query estimate's noise. Quantised codes also stop
        # where recall plateaus; full vectors reach 1.0 at nlist.
        if len(tried) > 1:
            gains.append(recall - tried[-2]["recall"])
        if recall - se >= target or (
            not lossless and nprobe >= 8 and len(gains) >= 2 and max(gains[-2:]) < PLATEAU_GAIN
        ):
            break
    reached = [t for t in tried if t["recall"] - t["se"] >= target]
    best = reached[0] if reached else max(tried, key=lambda t: (t["recall"], -t["nprobe"]))
    out |= {
        "nprobe": best["nprobe"],
        "recall": best["recall"],
        f"recall_at_{k}": best["recall"],
        "recall_se": best["se"],
        "reached": bool(reached),
        "self_matches_excluded": int(is_self.sum()),
        "ladder": tried,
    }
    if not reached:
        out["note"] = (
            f"no nprobe reached recall@{k} {target}; using the best, {best['recall']:.3f} at "
            f"nprobe {best['nprobe']} (the codes' quantisation limits recall)"
        )
    return best["nprobe"], out
