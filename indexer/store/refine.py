"""The re-scoring step of the ``ivf_pq4fs_sq8`` index: every vector again as 8-bit codes, under its id.

A fast-scan IVF-PQ search ranks candidates on 4-bit codes (two dimensions per code), which orders
near neighbours only roughly; its best ``k * k_factor`` candidates are re-scored here on 8-bit
scalar-quantised copies (one byte per dimension) and the best ``k`` kept. FAISS's ``IndexRefine``
does the same but cannot remove ids, which incremental publishing needs, so this keeps the codes
in an ``IndexIDMap2(IndexScalarQuantizer)`` (removal supported) and scores them in numpy:

* ids -> row positions through a sorted copy of the id map, rebuilt lazily after adds and removes
  (an argsort of the ids: ~0.1 s at 1 M, once per change, not per query);
* the candidates' code rows are gathered straight from FAISS's code array (no copy of the array)
  and decoded with FAISS's own ``sa_decode``, so a score is the inner product with exactly the
  vector ``reconstruct`` would give, block by block of queries to bound memory.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

BLOCK_CANDIDATES = 16_384  # candidate rows decoded at once (16 k x 512-d float32: 32 MiB)


class RefineCodes:
    """8-bit codes of every vector of an index, looked up by id to re-score candidates."""

    def __init__(self, index: faiss.Index):
        self.index = index  # IndexIDMap2 around an IndexScalarQuantizer
        # the IndexScalarQuantizer itself (Any: the stubs type downcast_index as a bare Index)
        self._codes: Any = faiss.downcast_index(index.index)  # type: ignore[attr-defined]  # stub: Index, not IDMap2
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def train(cls, dim: int, sample: np.ndarray) -> RefineCodes:
        codes = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        codes.train(sample)
        return cls(faiss.IndexIDMap2(codes))

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def d(self) -> int:
        return int(self.index.d)

    def add(self, ids: np.ndarray, x: np.ndarray) -> None:
        self.index.add_with_ids(x, ids)
        self._lookup = None

    def remove(self, ids: np.ndarray) -> None:
        self.index.remove_ids(faiss.IDSelectorBatch(ids))
        self._lookup = None

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        if self._lookup is None:
            id_map = faiss.vector_to_array(self.index.id_map)  # type: ignore[attr-defined]  # stub: Index
            order = np.argsort(id_map, kind="stable")
            self._lookup = (id_map[order], order)
        sorted_ids, order = self._lookup
        return order[np.searchsorted(sorted_ids, ids)]

    def rescore(self, q: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of each query's ``candidates`` (ids; -1: none) by inner product with their codes."""
        n_cand = candidates.shape[1]
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        if not self.ntotal or not n_cand:
            return scores, ids
        codes = faiss.rev_swig_ptr(self._codes.codes.data(), self.ntotal * self._codes.code_size)
        codes = codes.reshape(self.ntotal, self._codes.code_size)
        block = max(1, BLOCK_CANDIDATES // n_cand)
        for lo in range(0, len(q), block):
            cand = candidates[lo : lo + block]
            held = cand >= 0
            s = np.full(cand.shape, -np.inf, np.float32)
            if held.any():
                rows = np.nonzero(held)[0]
                vectors = self._codes.sa_decode(codes[self._positions(cand[held])])
                s[held] = np.einsum("ij,ij->i", vectors, q[lo : lo + block][rows])
            top = min(k, n_cand)
            order = np.argsort(-s, axis=1, kind="stable")[:, :top]
            top_s, top_i = np.take_along_axis(s, order, 1), np.take_along_axis(cand, order, 1)
            scores[lo : lo + len(cand), :top] = top_s
            ids[lo : lo + len(cand), :top] = np.where(np.isfinite(top_s), top_i, -1)
        return scores, ids
