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

import faiss
import numpy as np
from faiss.contrib.ivf_tools import add_preassigned

from indexer.errors import VectorIndexError
from indexer.store.index_plan import IDMAP_FLAT_BYTES, IndexPlan, plan_index
from indexer.store.index_tuning import ExactTopK, autotune_nprobe, exact_tuning
from indexer.store.refine import RefineCodes
from indexer.store.versions import fsync_path

__all__ = ["IndexPlan", "VectorIndex", "plan_index"]

GPU_MODES = ("auto", "never", "always")
FORMAT = 1
REFINE_FILE = "refine.faiss"
# ivf_pq4fs_sq8: candidates taken from the fast-scan lists per result, then re-scored on 8-bit codes;
# tried in turn while tuning until one reaches the target recall (the first is the default). On the
# hard 1 M set (bench/results_index_fastscan_hard.json) 8 gained ~0.01 recall@10 over 4.
K_FACTORS = (8, 16, 32, 64)


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


class VectorIndex:
    def __init__(
        self,
        plan: IndexPlan,
        index: faiss.Index,
        *,
        params: dict | None = None,
        tuning: dict | None = None,
        read_only: bool = False,
        refine: RefineCodes | None = None,
    ):
        self.plan = plan
        self.index = index
        # ivf_pq4fs_sq8: the same ids as 8-bit codes, on which the fast-scan index's top
        # k * k_factor candidates are re-scored (refine.py)
        self.refine = refine
        self.dim = plan.dim
        self.params = dict(params or {})
        self.tuning = dict(tuning or {})
        self.read_only = read_only
        self._ivf = faiss.extract_index_ivf(index) if plan.kind != "flat" else None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        """An empty exact index (a collection with no vectors yet)."""
        return cls(plan_index(0, dim), faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), tuning=exact_tuning(10))

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
            self = cls(plan, faiss.IndexIDMap2(faiss.IndexFlatIP(plan.dim)), tuning=exact_tuning(k))
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

        # tuning queries: a seeded random subset of the sample (a sample read from the database in
        # id order would otherwise tune on its oldest rows only), kept out of the training when
        # the rest suffices: k-means and the PQ codebooks fit their own training rows better than
        # other rows, and the tuned recall then read high (250k hard set, fast scan: 0.962 tuned on
        # training rows, 0.940 on held-out queries)
        pick = np.sort(
            np.random.default_rng(seed).choice(len(sample), min(max(0, tune_queries), len(sample)), replace=False)
        )
        queries = sample[pick]
        if len(sample) - len(pick) >= plan.min_train_size:
            sample = np.delete(sample, pick, axis=0)
            queries_trained_on = False
        else:
            queries_trained_on = True

        index = faiss.index_factory(plan.dim, plan.base_factory, faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = seed
        ivf.cp.spherical = True  # unit vectors: keep the centroids on the sphere
        if plan.kind in ("ivf_pq", "ivf_pq4fs_sq8"):
            faiss.downcast_index(index).pq.cp.seed = seed  # type: ignore[attr-defined]  # stub: Index, not IVFPQ
        refine = RefineCodes.train(plan.dim, sample) if plan.kind == "ivf_pq4fs_sq8" else None
        # the fast-scan lists pack codes in blocks that add_preassigned does not fill: added on the CPU
        gpu_add = gpu and refine is None
        started = time.perf_counter()
        if gpu:
            gpu_flat = _to_gpus(faiss.IndexFlatIP(plan.dim))  # stays referenced while training
            ivf.clustering_index = gpu_flat
            try:
                ivf.train(sample)
            finally:
                ivf.clustering_index = None  # type: ignore[assignment]  # stub: not Optional, SWIG takes None
            if gpu_add:
                assign = _to_gpus(faiss.IndexFlatIP(plan.dim))
                assign.add(ivf.quantizer.reconstruct_n(0, ivf.nlist))
        else:
            ivf.train(sample)
        train_s = time.perf_counter() - started

        self = cls(plan, index, params={"nprobe": 1}, refine=refine)
        exact = ExactTopK(queries, k + 1)
        started = time.perf_counter()
        for ids, x in batches:
            x = _as_vectors(x, plan.dim)
            ids = _as_ids(ids, len(x))
            if not len(ids):
                continue
            if gpu_add:
                _, lists = assign.search(x, 1)
                add_preassigned(ivf, x, np.ascontiguousarray(lists[:, 0]), ids)
            else:
                index.add_with_ids(x, ids)
            if refine is not None:
                refine.add(ids, x)
            if len(queries):
                exact.update(ids, x)
        add_s = time.perf_counter() - started
        self._tune(exact, k, target_recall)
        self.tuning.update(
            train_seconds=round(train_s, 3),
            add_seconds=round(add_s, 3),
            gpu=gpu,
            train_rows=len(sample),
            tuning_queries_in_training=queries_trained_on,
        )
        return self

    def _tune(self, exact: ExactTopK, k: int, target: float) -> None:
        """nprobe (and, with re-scoring, the smallest k_factor on K_FACTORS) reaching ``target``;
        when none does, the setting with the best recall."""
        assert self._ivf is not None, "only inverted files are tuned"
        tried: list[tuple[dict, dict]] = []
        for k_factor in K_FACTORS if self.refine is not None else (None,):
            fixed: dict[str, int] = {} if k_factor is None else {"k_factor": k_factor}

            def search(q: np.ndarray, kk: int, p: dict, fixed: dict = fixed) -> tuple[np.ndarray, np.ndarray]:
                return self.search(q, kk, params=fixed | p)

            nprobe, tuning = autotune_nprobe(
                search,
                exact,
                nlist=self._ivf.nlist,
                k=k,
                target=target,
                lossless=self.plan.kind == "ivf_flat",
                ntotal=self.ntotal,
            )
            tried.append(({"nprobe": nprobe} | fixed, tuning | fixed))
            if tuning.get("reached") is not False:  # reached, or nothing to tune on
                self.params, self.tuning = tried[-1]
                return
        # none reached the target: the best recall (max keeps the smaller k_factor on a tie)
        self.params, self.tuning = max(tried, key=lambda t: t[1].get("recall", 0.0))

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
            if self.refine is not None:
                self.refine.add(ids, x)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids`` (absent ones are ignored); returns how many vectors were removed."""
        self._writable()
        ids = _as_ids(ids)
        if not len(ids) or self.ntotal == 0:
            return 0
        removed = int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
        if self.refine is not None:
            self.refine.remove(ids)
        return removed

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
        if self.refine is not None:
            k_factor = max(1, int(chosen.get("k_factor", K_FACTORS[0])))
            _, candidates = self.index.search(q, k * k_factor, params=sp)
            return self.refine.rescore(q, candidates, k)
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
        refine = self.ntotal * (self.dim + IDMAP_FLAT_BYTES) if self.refine is not None else 0
        return int(self.ntotal * (self._ivf.code_size + 8) + refine + self._ivf.nlist * self.dim * 4)

    # ---- persistence ------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write ``folder/index.faiss`` (+ ``refine.faiss``) and ``folder/index.json`` (atomically, fsynced)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.refine is not None:
            _write_faiss(self.refine.index, folder / REFINE_FILE)
        _write_faiss(self.index, folder / "index.faiss")
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
        index = _read_faiss(folder / "index.faiss", flags)
        refine = None
        if plan.kind == "ivf_pq4fs_sq8":
            refine = RefineCodes(_read_faiss(folder / REFINE_FILE, faiss.IO_FLAG_MMAP_IFC | flags if mmap else 0))
        for name, held in (("index.faiss", index), (REFINE_FILE, refine)):
            if held is not None and (held.d != plan.dim or held.ntotal != meta.get("ntotal", index.ntotal)):
                raise VectorIndexError(
                    f"{folder}: {name} holds {held.ntotal} vectors of {held.d}-d, "
                    f"index.json says {meta.get('ntotal')} of {plan.dim}-d"
                )
        params, tuning = meta.get("params"), meta.get("tuning")
        return cls(plan, index, params=params, tuning=tuning, read_only=mmap, refine=refine)

    def describe(self) -> str:
        p, t = self.plan, self.tuning
        head = f"{p.kind} index ({p.factory}): {self.ntotal:,} vectors of {self.dim}-d, {_size(self.memory_bytes)}"
        if self._ivf is None:
            how = "search: exact inner product over every vector (recall 1.0)"
        else:
            how = f"search: nprobe {self.params.get('nprobe')} of {self._ivf.nlist:,} lists"
            if self.refine is not None:
                how += f", the best {self.params.get('k_factor', K_FACTORS[0])}x k re-scored on 8-bit codes"
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


def _write_faiss(index: faiss.Index, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    # Through a Python file, so a full disk is OSError(ENOSPC) (store.io), not FAISS's RuntimeError.
    with open(tmp, "wb") as out:
        faiss.write_index(index, faiss.PyCallbackIOWriter(out.write))  # type: ignore[attr-defined]
    fsync_path(tmp)
    os.replace(tmp, path)


def _read_faiss(path: Path, flags: int) -> faiss.Index:
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        raise VectorIndexError(f"{path.parent}: cannot read {path.name}: {str(exc).splitlines()[0]}") from exc


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**27 else f"{n_bytes / 2**20:.1f} MiB"
