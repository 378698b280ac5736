"""The re-scoring step of the ``ivf_pq4fs_sq8`` index: every vector again as 8-bit codes, under its id.

A fast-scan IVF-PQ search ranks candidates on 4-bit codes (two dimensions per code), which orders
near neighbours only roughly; its best ``k * k_factor`` candidates are re-scored here on 8-bit
scalar-quantised copies (one byte per dimension) and the best ``k`` kept. FAISS's ``IndexRefine``
does the same but cannot remove ids, which incremental publishing needs, so this keeps the codes
in an ``IndexIDMap2(IndexScalarQuantizer)`` (removal supported) and scores them in numpy:

* ids -> row positions through a direct table when the ids are dense (database row ids are), else
  a sorted copy of the id map; either is rebuilt lazily after adds and removes (~0.1 s at 1 M,
  once per change, not per query);
* the candidates' code rows are gathered straight from FAISS's code array (no copy of the array)
  and scored without decoding them: with FAISS's 8-bit decoding x = vmin + (c + 0.5) / 255 * vdiff,
  q . x is a constant per query plus one product of the raw codes with q * vdiff / 255 (3x faster
  than ``sa_decode`` then a dot product; the same score to float rounding, ~1e-7).
"""

from __future__ import annotations

from typing import Any, cast

import faiss
import numpy as np

from indexer.errors import VectorIndexError

# candidate rows scored at once: 1,024 x 512-d float32 is 2 MiB, which stays in the caches (16 k
# rows, 32 MiB, made the whole step 3x slower at 1 M x 512-d)
BLOCK_CANDIDATES = 1_024
# ids up to DENSE_FACTOR * n + DENSE_SLACK are looked up in a direct table (8 bytes an id value)
DENSE_FACTOR = 4
DENSE_SLACK = 65_536


class RefineCodes:
    """8-bit codes of every vector of an index, looked up by id to re-score candidates."""

    def __init__(self, index: faiss.Index):
        self.index = index  # IndexIDMap2 around an IndexScalarQuantizer
        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else None
        if not isinstance(inner, faiss.IndexScalarQuantizer):
            raise VectorIndexError(
                f"refine codes must be an IndexIDMap2 over 8-bit codes, found {type(index).__name__}"
            )
        self._codes: Any = cast(Any, inner)  # Any: the stubs lack the quantizer's fields
        self._lookup: tuple[np.ndarray | None, np.ndarray] | None = None  # (sorted ids or None, rows)
        quantizer = self._codes.sq
        trained = faiss.vector_to_array(quantizer.trained).astype(np.float32)
        if quantizer.qtype != faiss.ScalarQuantizer.QT_8bit or trained.size != 2 * index.d:
            raise VectorIndexError(
                f"refine codes must be 8-bit per dimension with a trained range ({index.d}-d), found qtype "
                f"{quantizer.qtype} with {trained.size} range values"
            )
        # FAISS's QT_8bit decoding: x_i = vmin_i + (c_i + 0.5) / 255 * vdiff_i
        self._vmin, self._step = trained[: index.d], trained[index.d :] / 255.0

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
            rows = np.arange(len(id_map), dtype=np.int64)
            if len(id_map) and id_map.max() < DENSE_FACTOR * len(id_map) + DENSE_SLACK:
                # database row ids are dense: a direct table (one memory access a candidate,
                # against ~20 for a binary search over a million ids)
                table = np.full(int(id_map.max()) + 1, -1, np.int64)
                table[id_map] = rows
                self._lookup = (None, table)
            else:
                order = np.argsort(id_map, kind="stable")
                self._lookup = (id_map[order], rows[order])
        sorted_ids, rows = self._lookup
        if sorted_ids is None:
            found = rows[np.minimum(ids, len(rows) - 1)]
            found[ids >= len(rows)] = -1
        else:
            at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
            found = np.where(sorted_ids[at] == ids, rows[at], -1)
        if (found < 0).any():
            # the fast-scan lists and the codes were written together: a gap means a damaged index
            missing = ids[found < 0][:5].tolist()
            raise VectorIndexError(f"the re-scoring codes lack ids the index returned ({missing}); rebuild the index")
        return found

    def rescore(self, q: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of each query's ``candidates`` (ids; -1: none) by inner product with their codes."""
        n_cand = candidates.shape[1]
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        if not self.ntotal or not n_cand:
            return scores, ids
        codes = faiss.rev_swig_ptr(self._codes.codes.data(), self.ntotal * self._codes.code_size)
        codes = codes.reshape(self.ntotal, self._codes.code_size)
        # q . decode(c) = q . vmin + sum_i q_i * step_i * (c_i + 0.5): one product with the raw codes
        weights = (q * self._step).astype(np.float32)
        # row by row (a BLAS matrix-vector product may round a batch unlike a single query)
        offsets = (q * self._vmin).sum(axis=1) + 0.5 * weights.sum(axis=1)
        block = max(1, BLOCK_CANDIDATES // n_cand)
        top = min(k, n_cand)
        for lo in range(0, len(q), block):
            cand = candidates[lo : lo + block]
            held = cand >= 0
            rows = np.zeros(cand.shape, np.int64)
            rows[held] = self._positions(cand[held])
            gathered = codes[rows].astype(np.float32)  # (queries, candidates, dim), a few MiB
            s = np.einsum("qcd,qd->qc", gathered, weights[lo : lo + block]) + offsets[lo : lo + block, None]
            s[~held] = -np.inf
            order = np.argsort(-s, axis=1, kind="stable")[:, :top]
            top_s, top_i = np.take_along_axis(s, order, 1), np.take_along_axis(cand, order, 1)
            scores[lo : lo + len(cand), :top] = top_s
            ids[lo : lo + len(cand), :top] = np.where(np.isfinite(top_s), top_i, -1)
        return scores, ids
