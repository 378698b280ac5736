"""RefineCodes: re-scoring candidates on 8-bit codes looked up by id, against FAISS's own reconstruct."""

from __future__ import annotations

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from indexer.store.refine import RefineCodes  # noqa: E402  (after the faiss skip)

DIM = 24


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference(refine: RefineCodes, q: np.ndarray, candidates: np.ndarray, k: int):
    """Score each held candidate with the vector FAISS reconstructs for it; best k, stable order."""
    scores = np.full(candidates.shape, -np.inf, np.float32)
    for i, row in enumerate(candidates):
        for j, c in enumerate(row):
            if c >= 0:
                scores[i, j] = refine.index.reconstruct(int(c)) @ q[i]
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, 1)
    return top, np.where(np.isfinite(top), np.take_along_axis(candidates, order, 1), -1)


def test_rescore_matches_reconstruct_with_holes_and_after_removal(monkeypatch):
    x = unit(3000, 1)
    ids = np.random.default_rng(2).choice(10**12, 3000, replace=False).astype(np.int64)  # sparse, unordered ids
    refine = RefineCodes.train(DIM, x[:1000])
    refine.add(ids[:2000], x[:2000])
    refine.add(ids[2000:], x[2000:])
    q = unit(37, 3)
    candidates = ids[np.random.default_rng(4).integers(0, 3000, (37, 40))]
    candidates[5, 10:] = -1  # fewer candidates than asked for
    candidates[6, :] = -1  # none at all
    monkeypatch.setattr("indexer.store.refine.BLOCK_CANDIDATES", 100)  # several blocks of queries
    scores, found = refine.rescore(q, candidates, 10)
    want_s, want_i = reference(refine, q, candidates, 10)
    np.testing.assert_array_equal(found, want_i)
    np.testing.assert_allclose(scores, want_s, rtol=1e-6, atol=1e-6)
    assert (found[6] == -1).all() and np.isinf(scores[6]).all()
    # the codes are close to the vectors: 8 bits a dimension
    pos = {int(i): n for n, i in enumerate(ids)}
    held = found >= 0
    exact = np.array([x[pos[int(found[r, j])]] @ q[r] for r, j in zip(*np.nonzero(held), strict=True)])
    error = np.abs(scores[held] - exact)
    assert np.median(error) < 5e-3 and error.max() < 5e-2  # the range is the sample's: rare values clip

    # removal moves rows: the id lookup is rebuilt, scores still belong to the right ids
    gone = ids[::3]
    refine.remove(gone)
    assert refine.ntotal == 3000 - len(gone)
    kept = candidates.copy()
    kept[np.isin(kept, gone)] = -1
    scores, found = refine.rescore(q, kept, 5)
    want_s, want_i = reference(refine, q, kept, 5)
    np.testing.assert_array_equal(found, want_i)
    np.testing.assert_allclose(scores, want_s, rtol=1e-6, atol=1e-6)


def test_rescore_k_larger_than_candidates_and_empty_index():
    refine = RefineCodes.train(DIM, unit(500, 5))
    q = unit(3, 6)
    scores, found = refine.rescore(q, np.full((3, 4), -1, np.int64), 10)
    assert found.shape == (3, 10) and (found == -1).all() and np.isinf(scores).all()
    refine.add(np.array([7, 8]), unit(2, 7))
    scores, found = refine.rescore(q, np.array([[7, 8], [8, -1], [-1, -1]]), 10)
    assert set(found[0, :2]) == {7, 8} and (found[0, 2:] == -1).all()
    assert found[1, 0] == 8 and (found[1, 1:] == -1).all() and (found[2] == -1).all()


def test_ids_missing_from_the_codes_are_a_clear_error():
    """Candidates the codes do not hold (an index whose two files disagree) raise, never score row 0."""
    from indexer.errors import VectorIndexError

    x = unit(200, 8)
    q = unit(2, 9)
    for ids in (np.arange(200, dtype=np.int64) + 10, np.arange(200, dtype=np.int64) * 10**9 + 1):  # dense, sparse
        refine = RefineCodes.train(DIM, x)
        refine.add(ids, x)
        refine.rescore(q, ids[None, :5].repeat(2, 0), 3)
        for bad in (int(ids.max()) + 1, 5, 10**15):
            with pytest.raises(VectorIndexError, match="lack ids"):
                refine.rescore(q, np.array([[ids[0], bad], [ids[1], -1]]), 2)


def test_refine_file_of_another_kind_is_a_clear_error():
    from indexer.errors import VectorIndexError

    with pytest.raises(VectorIndexError, match="IndexIDMap2 over 8-bit codes"):
        RefineCodes(faiss.IndexFlatIP(DIM))
    with pytest.raises(VectorIndexError, match="IndexIDMap2 over 8-bit codes"):
        RefineCodes(faiss.IndexIDMap2(faiss.IndexFlatIP(DIM)))
    four_bit = faiss.IndexScalarQuantizer(DIM, faiss.ScalarQuantizer.QT_4bit, faiss.METRIC_INNER_PRODUCT)
    with pytest.raises(VectorIndexError, match="8-bit per dimension"):
        RefineCodes(faiss.IndexIDMap2(four_bit))
