"""Everything FAISS: build, tune, search, update, save and load one vector index.

Vectors are L2-normalised float32 and scored by inner product (= cosine); ids are int64 database
row ids (``IndexIDMap2`` around a flat index, native ids in the inverted lists of IVF indexes).
``plan_index`` (``index_plan.py``) decides the kind; ``VectorIndex.build`` streams the vectors in
batch by batch, so a collection never has to fit in memory twice, and autotunes ``nprobe``
against exact search on the way.

GPU: with ``use_gpu="auto"`` and a GPU build of FAISS that sees a device, k-means training runs
on the GPU (``clustering_index``) and so does the assignment of added vectors to lists
(``add_preassigned``); the lists themselves are filled on the CPU, which keeps the result a plain
CPU index, searched and saved on the CPU. Both paths run the same algorithm, so they agree up
to float rounding. FAISS's OpenMP thread count is never changed here.

Writes (``add``/``remove``) must be serialised by the caller; concurrent searches are safe.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from faiss.contrib.ivf_tools import add_preassigned

from indexer.errors import VectorIndexError
from indexer.store.index_plan import IndexPlan, plan_index
from indexer.store.versions import fsync_path

__all__ = ["IndexPlan", "VectorIndex", "plan_index"]

GPU_MODES = ("auto", "never", "always")
FORMAT = 1
_EXACT_BLOCK = 65_536  # rows per brute-force block while tracking the tuning queries' top-k
_SELF_TOL = 1e-5  # a tuning query whose best exact score is its own norm^2 is in the index


def _gpu_count() -> int:
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:  # a FAISS build without GPU symbols
        return 0


def _to_gpus(index: faiss.Index) -> faiss.Index:
    return faiss.index_cpu_to_all_gpus(index)


def _want_gpu(mode: str) -> bool:
    if mode not in GPU_MODES:
        raise ValueError(f"use_gpu must be one of {', '.join(GPU_MODES)}, got {mode!r}")
    if mode == "never":
        return False
    gpus = _gpu_count()
    if mode == "always" and gpus == 0:
        raise VectorIndexError(
            "use_gpu='always' but FAISS sees no GPU (faiss-cpu is installed, or no CUDA device is "
            "visible); install faiss-gpu-cu12 on a CUDA machine or use use_gpu='auto'/'never'"
        )
    return gpus > 0


def _as_vectors(x, dim: int, what: str = "vectors") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1 and x.shape[0] == dim:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _as_ids(ids, n: int | None = None) -> np.ndarray:
    ids = np.asarray(ids).reshape(-1)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be integers, got {ids.dtype}")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if n is not None and len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} vectors")
    if ids.size and ids.min() < 0:
        raise ValueError("ids must be >= 0 (FAISS uses -1 for 'no result')")
    return ids


class _ExactTopK:
    """Running exact top-k of a few queries over vectors seen batch by batch (brute force, merge)."""

    def __init__(self, queries: np.ndarray, k: int):
        self.queries, self.k = queries, k
        self.scores = np.full((len(queries), k), -np.inf, np.float32)
        self.ids = np.full((len(queries), k), -1, np.int64)

    def update(self, ids: np.ndarray, x: np.ndarray) -> None:
        for lo in range(0, len(ids), _EXACT_BLOCK):
            s = self.queries @ x[lo : lo + _EXACT_BLOCK].T
            block_ids = ids[lo : lo + _EXACT_BLOCK]
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
    hits, total = _recall_counts(approx_ids, exact_ids, k, exclude)
    return float(hits.sum() / total.sum()) if total.sum() else 1.0


def _recall_counts(approx_ids, exact_ids, k, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    hits, total = np.zeros(len(exact_ids)), np.zeros(len(exact_ids))
    for j in range(len(exact_ids)):
        drop = -1 if exclude is None else exclude[j]
        exact = [i for i in exact_ids[j] if i >= 0 and i != drop][:k]
        approx = [i for i in approx_ids[j] if i >= 0 and i != drop][:k]
        hits[j], total[j] = len(set(approx).intersection(exact)), len(exact)
    return hits, total


def _ladder(nlist: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, ...: doubling, with a half step between powers of two; ends at nlist."""
    steps, p = [], 1
    while p < nlist:
        steps += [p] + ([p * 3 // 2] if p >= 2 and p * 3 // 2 < nlist else [])
        p *= 2
    return steps + [nlist]


class VectorIndex:
    def __init__(
        self,
        plan: IndexPlan,
        index: faiss.Index,
        *,
        params: dict | None = None,
        tuning: dict | None = None,
        read_only: bool = False,
    ):
        self.plan = plan
        self.index = index
        self.dim = plan.dim
        self.params = dict(params or {})
        self.tuning = dict(tuning or {})
        self.read_only = read_only
        self._ivf = faiss.extract_index_ivf(index) if plan.kind != "flat" else None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        """An empty exact index (a collection with no vectors yet)."""
        return cls(plan_index(0, dim), faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), tuning=_exact_tuning(10))

    @classmethod
    def build(
        cls,
        plan: IndexPlan,
        batches: Iterable[tuple[np.ndarray, np.ndarray]],
        *,
        sample: np.ndarray | None = None,
        target_recall: float = 0.95,
        k: int = 10,
        use_gpu: str = "auto",
        tune_queries: int = 200,
        seed: int = 0,
    ) -> VectorIndex:
        """Build ``plan`` from ``(ids, vectors)`` batches (one pass; never all in memory at once).

        IVF plans train on ``sample`` (rows of the collection, ideally ``plan.train_size`` of them);
        ``tune_queries`` of its rows, picked at random, are also the queries nprobe is tuned on.
        """
        gpu = _want_gpu(use_gpu)
        if not 0.0 < target_recall <= 1.0:
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if plan.kind == "flat":
            self = cls(plan, faiss.IndexIDMap2(faiss.IndexFlatIP(plan.dim)), tuning=_exact_tuning(k))
            for ids, x in batches:
                self.add(ids, x)
            return self
        if sample is None:
            raise ValueError(
                f"a {plan.kind} plan ({plan.factory}) needs a training sample: pass sample= with "
                f"about {plan.train_size:,} rows of the collection (at least {plan.min_train_size:,})"
            )
        sample = _as_vectors(sample, plan.dim, "sample")
        if len(sample) < plan.min_train_size:
            raise ValueError(
                f"training sample too small for {plan.factory}: {len(sample):,} rows, need at "
                f"least {plan.min_train_size:,} (plan asks for {plan.train_size:,})"
            )

        index = faiss.index_factory(plan.dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = seed
        ivf.cp.spherical = True  # unit vectors: keep the centroids on the sphere
        if plan.kind == "ivf_pq":
            faiss.downcast_index(index).pq.cp.seed = seed  # type: ignore[attr-defined]  # stub: Index, not IVFPQ
        started = time.perf_counter()
        if gpu:
            gpu_flat = _to_gpus(faiss.IndexFlatIP(plan.dim))  # stays referenced while training
            ivf.clustering_index = gpu_flat
            try:
                ivf.train(sample)
            finally:
                ivf.clustering_index = None  # type: ignore[assignment]  # stub: not Optional, SWIG takes None
            assign = _to_gpus(faiss.IndexFlatIP(plan.dim))
            assign.add(ivf.quantizer.reconstruct_n(0, ivf.nlist))
        else:
            ivf.train(sample)
        train_s = time.perf_counter() - started

        self = cls(plan, index, params={"nprobe": 1})
        # tuning queries: a seeded random subset of the sample (a sample read from the database in
        # id order would otherwise tune on its oldest rows only)
        pick = np.random.default_rng(seed).choice(len(sample), min(max(0, tune_queries), len(sample)), replace=False)
        queries = sample[np.sort(pick)]
        exact = _ExactTopK(queries, k + 1)
        started = time.perf_counter()
        for ids, x in batches:
            x = _as_vectors(x, plan.dim)
            ids = _as_ids(ids, len(x))
            if not len(ids):
                continue
            if gpu:
                _, lists = assign.search(x, 1)
                add_preassigned(ivf, x, np.ascontiguousarray(lists[:, 0]), ids)
            else:
                index.add_with_ids(x, ids)
            if len(queries):
                exact.update(ids, x)
        add_s = time.perf_counter() - started
        self.tuning = self._autotune(exact, k, target_recall)
        self.tuning.update(
            train_seconds=round(train_s, 3), add_seconds=round(add_s, 3), gpu=gpu, train_rows=len(sample)
        )
        return self

    def _autotune(self, exact: _ExactTopK, k: int, target: float) -> dict:
        """Smallest nprobe on a doubling ladder whose recall@k on the tuning queries reaches ``target``
        (by one standard error: the mean over queries minus its standard error)."""
        assert self._ivf is not None, "nprobe is tuned on IVF indexes only"
        nlist = self._ivf.nlist
        out: dict[str, Any] = {"target_recall": target, "k": k, "queries": len(exact.queries)}
        if not len(exact.queries) or self.ntotal == 0:
            self.params = {"nprobe": min(nlist, 16)}
            return out | {
                "nprobe": self.params["nprobe"],
                "reached": None,
                "note": "not tuned: no tuning queries or no vectors; nprobe left at a default",
            }
        norms = np.einsum("ij,ij->i", exact.queries, exact.queries)
        is_self = exact.scores[:, 0] >= norms - _SELF_TOL * np.maximum(norms, 1.0)
        exclude = np.where(is_self, exact.ids[:, 0], -1)
        tried, gains = [], []
        for nprobe in _ladder(nlist):
            _, found = self.search(exact.queries, k + 1, params={"nprobe": nprobe})
            hits, total = _recall_counts(found, exact.ids, k, exclude)
            recall = float(hits.sum() / max(total.sum(), 1))
            per_query = hits[total > 0] / total[total > 0]
            se = float(per_query.std(ddof=1) / np.sqrt(len(per_query))) if len(per_query) > 1 else 0.0
            tried.append({"nprobe": nprobe, "recall": round(recall, 4), "se": round(se, 4)})
            # Reached: recall one standard error above the target, so that the held-out recall
            # lands at the target despite the 200-query estimate's noise. Quantised codes also stop
            # where recall plateaus (two steps gaining < 0.002 each); full vectors reach 1.0 at nlist.
            if len(tried) > 1:
                gains.append(recall - tried[-2]["recall"])
            if recall - se >= target or (
                self.plan.kind != "ivf_flat" and nprobe >= 8 and len(gains) >= 2 and max(gains[-2:]) < 0.002
            ):
                break
        reached = [t for t in tried if t["recall"] - t["se"] >= target]
        best = reached[0] if reached else max(tried, key=lambda t: (t["recall"], -t["nprobe"]))
        self.params = {"nprobe": best["nprobe"]}
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
        return out

    # ---- updates ----------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.read_only:
            raise VectorIndexError(
                "this index was loaded with mmap=True and is read-only; load it without mmap to add or remove vectors"
            )

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under new ids (an id already present would be stored twice: remove it first)."""
        self._writable()
        x = _as_vectors(vectors, self.dim)
        ids = _as_ids(ids, len(x))
        if len(ids):
            self.index.add_with_ids(x, ids)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids`` (absent ones are ignored); returns how many vectors were removed."""
        self._writable()
        ids = _as_ids(ids)
        if not len(ids) or self.ntotal == 0:
            return 0
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    # ---- queries ----------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None, params: dict | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product: (scores float32 (q, k), ids int64 (q, k)); empty slots: id -1, -inf.

        ``allowed_ids`` restricts the results to those ids inside the search (an ``IDSelectorBatch``).
        On IVF indexes nprobe is then widened by 1 / (share of ids allowed), up to every list, so
        that a selective filter still finds about as many candidates as an unfiltered search.
        """
        q = _as_vectors(queries, self.dim, "queries")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        chosen = {**self.params, **(params or {})}
        selector = None
        sp: faiss.SearchParameters | None
        if allowed_ids is not None:
            allowed = np.unique(_as_ids(allowed_ids))
            if not len(allowed):
                return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
            selector = faiss.IDSelectorBatch(allowed)
        if self._ivf is not None:
            nlist = self._ivf.nlist
            nprobe = max(1, min(nlist, int(chosen.get("nprobe", 1))))
            if selector is not None and self.ntotal:
                share = min(1.0, len(allowed) / self.ntotal)
                nprobe = min(nlist, math.ceil(nprobe / share))
            # the generated stubs lack the keyword constructors faiss's Python layer adds
            if selector is not None:
                sp = faiss.SearchParametersIVF(nprobe=nprobe, sel=selector)  # type: ignore[call-arg]
            else:
                sp = faiss.SearchParametersIVF(nprobe=nprobe)  # type: ignore[call-arg]
        else:
            sp = faiss.SearchParameters(sel=selector) if selector is not None else None  # type: ignore[call-arg]
        scores, ids = self.index.search(q, k, params=sp)
        scores[ids < 0] = -np.inf
        return scores, ids

    def ids(self) -> np.ndarray:
        """Every stored id, sorted (int64)."""
        if self._ivf is None:
            id_map = self.index.id_map  # type: ignore[attr-defined]  # stub: Index, not IndexIDMap2
            return np.sort(faiss.vector_to_array(id_map).astype(np.int64, copy=False))
        invlists = self._ivf.invlists
        assert invlists is not None, "an IVF index always has inverted lists"
        parts = []
        for lst in range(invlists.nlist):
            size = invlists.list_size(lst)
            if size:
                ptr = invlists.get_ids(lst)
                parts.append(faiss.rev_swig_ptr(ptr, size).copy())
                invlists.release_ids(lst, ptr)  # type: ignore[attr-defined]  # missing from the stub
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    @property
    def memory_bytes(self) -> int:
        """Approximate memory of the index: codes + ids (+ centroids)."""
        if self._ivf is None:
            return int(self.ntotal * self.plan.bytes_per_vector)
        return int(self.ntotal * (self._ivf.code_size + 8) + self._ivf.nlist * self.dim * 4)

    # ---- persistence ------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write ``folder/index.faiss`` and ``folder/index.json`` (atomically, fsynced)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "index.faiss.tmp"
        # Through a Python file, so a full disk is OSError(ENOSPC) (store.io), not FAISS's RuntimeError.
        with open(tmp, "wb") as out:
            faiss.write_index(self.index, faiss.PyCallbackIOWriter(out.write))  # type: ignore[attr-defined]
        fsync_path(tmp)
        os.replace(tmp, folder / "index.faiss")
        meta = {
            "format": FORMAT,
            "plan": self.plan.to_dict(),
            "params": self.params,
            "tuning": self.tuning,
            "dim": self.dim,
            "ntotal": self.ntotal,
            "memory_bytes": self.memory_bytes,
            "faiss_version": faiss.__version__,
        }
        tmp = folder / "index.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        fsync_path(tmp)
        os.replace(tmp, folder / "index.json")
        fsync_path(folder)

    @classmethod
    def load(cls, folder: Path, *, mmap: bool = False) -> VectorIndex:
        """Load a saved index; ``mmap=True`` maps the file instead of reading it (read-only then)."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "index.json").read_text())
            plan = IndexPlan.from_dict(meta["plan"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VectorIndexError(f"{folder}: unreadable index.json: {exc}") from exc
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        if mmap and plan.kind == "flat":
            flags |= faiss.IO_FLAG_MMAP_IFC
        try:
            index = faiss.read_index(str(folder / "index.faiss"), flags)
        except RuntimeError as exc:
            raise VectorIndexError(f"{folder}: cannot read index.faiss: {str(exc).splitlines()[0]}") from exc
        if index.d != plan.dim or index.ntotal != meta.get("ntotal", index.ntotal):
            raise VectorIndexError(
                f"{folder}: index.faiss holds {index.ntotal} vectors of {index.d}-d, "
                f"index.json says {meta.get('ntotal')} of {plan.dim}-d"
            )
        return cls(plan, index, params=meta.get("params"), tuning=meta.get("tuning"), read_only=mmap)

    def describe(self) -> str:
        p, t = self.plan, self.tuning
        head = f"{p.kind} index ({p.factory}): {self.ntotal:,} vectors of {self.dim}-d, {_size(self.memory_bytes)}"
        if self._ivf is None:
            how = "search: exact inner product over every vector (recall 1.0)"
        else:
            how = f"search: nprobe {self.params.get('nprobe')} of {self._ivf.nlist:,} lists"
            if t.get("recall") is not None:
                how += (
                    f"; recall@{t['k']} {t['recall']:.3f} vs exact on {t['queries']} sample queries "
                    f"(target {t['target_recall']}{'' if t.get('reached') else ', not reached'})"
                )
            elif t.get("note"):
                how += f"; {t['note']}"
        return "\n".join([head, how, f"why: {p.reason}"])

    def __repr__(self) -> str:
        return f"VectorIndex({self.plan.factory!r}, ntotal={self.ntotal}, params={self.params})"


def _exact_tuning(k: int) -> dict:
    return {"exact": True, "k": k, "recall": 1.0, f"recall_at_{k}": 1.0}


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**27 else f"{n_bytes / 2**20:.1f} MiB"
