"""Turn a collection's rows into a published FAISS index version: incrementally when the live
index still suits the collection's size, rebuilt (and re-planned) when it does not.

Incremental: load the live version, remove ids that are gone or were rewritten since its
generation, add the rows written since, save as the next version. Rebuild: plan the index for
the current size and memory budget (``plan_index``), train on a random sample of the rows,
stream every vector in from the database page by page, autotune nprobe, save.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from indexer.errors import VectorIndexError
from indexer.store import vector_rows, versions
from indexer.store.db import Database
from indexer.store.schema import Collection, IndexVersion
from indexer.store.vector_index import IndexPlan, VectorIndex, plan_index

# An IVF index trained for n vectors is re-planned once the collection has grown past this
# factor (its nlist is then too small: lists get long and searches slow) or shrunk below 1/it.
REPLAN_GROWTH = 4.0


@dataclass(frozen=True)
class PublishResult:
    kind: str
    mode: str  # "unchanged" | "incremental" | "rebuild" | "first"
    version: versions.VersionInfo | None
    added: int
    removed: int
    seconds: float
    plan: IndexPlan | None


def _needs_replan(live: IndexPlan, fresh: IndexPlan, n: int) -> bool:
    if live.kind != fresh.kind or live.dim != fresh.dim:
        return True
    if live.kind == "flat":
        return False
    return not (live.n_vectors / REPLAN_GROWTH <= n <= live.n_vectors * REPLAN_GROWTH)


def _sample(db: Database, collection_id: int, kind: str, ids: np.ndarray, size: int, seed: int) -> np.ndarray:
    pick = ids if len(ids) <= size else np.sort(np.random.default_rng(seed).choice(ids, size, replace=False))
    parts = [v for _, v in vector_rows.iter_vectors(db, collection_id, kind, ids=pick)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def publish_index(
    db: Database,
    collection: Collection,
    index_dir: Path,
    kind: str,
    *,
    memory_budget_bytes: int = 4 << 30,
    force_rebuild: bool = False,
    use_gpu: str = "auto",
    seed: int = 0,
) -> PublishResult:
    """Publish ``kind`` ("files" or "segments") of ``collection`` if anything changed.

    The caller holds ``versions.collection_lock``.
    """
    start = time.perf_counter()
    live = versions.current_version(index_dir, collection.name, kind)
    # Re-read the generation: rows may have been written since ``collection`` was loaded.
    with db.session() as s:
        generation = int(s.execute(select(Collection.generation).where(Collection.id == collection.id)).scalar_one())
    # A version of an earlier collection of the same name (deleted, or moved to another model
    # by ``indexer rebuild``) is never updated in place.
    if live is not None and (
        live.collection_id != collection.id or live.model_fingerprint != collection.model_fingerprint
    ):
        force_rebuild = True
    current: VectorIndex | None = None
    if live is not None and not force_rebuild:
        # The live index is read before it is trusted: a truncated or damaged one (a full disk,
        # a bad copy) used to be reported "unchanged" forever. It costs one read of the index
        # per publish (a no-op ingest included); an unreadable one is rebuilt from the database.
        try:
            current = VectorIndex.load(live.folder)
        except VectorIndexError:
            force_rebuild = True
    if live is not None and live.generation == generation and not force_rebuild:
        return PublishResult(kind, "unchanged", live, 0, 0, time.perf_counter() - start, None)

    ids = vector_rows.live_ids(db, collection.id, kind)
    fresh = plan_index(len(ids), collection.dim, memory_budget_bytes=memory_budget_bytes)
    index: VectorIndex | None = None
    removed = added = 0
    if live is not None and current is not None and not force_rebuild:
        if not _needs_replan(current.plan, fresh, len(ids)):
            index = current
            held = index.ids()
            stale = np.union1d(
                np.setdiff1d(held, ids, assume_unique=True),
                vector_rows.ids_written_after(db, collection.id, kind, live.generation),
            )
            removed = index.remove(stale) if len(stale) else 0
            for batch_ids, vectors in vector_rows.iter_vectors(
                db, collection.id, kind, after_generation=live.generation
            ):
                index.add(batch_ids, vectors)
                added += len(batch_ids)
            mode = "incremental"
    if index is None:
        sample = _sample(db, collection.id, kind, ids, fresh.train_size, seed) if fresh.train_size else None
        index = VectorIndex.build(
            fresh, vector_rows.iter_vectors(db, collection.id, kind), sample=sample, use_gpu=use_gpu, seed=seed
        )
        added = index.ntotal
        removed = live.n_vectors if live is not None else 0
        mode = "rebuild" if live is not None else "first"

    tmp, number = versions.new_version_folder(index_dir, collection.name, kind)
    try:
        index.save(tmp)
        info = versions.publish_folder(
            tmp,
            collection=collection.name,
            collection_id=collection.id,
            kind=kind,
            version=number,
            generation=generation,
            model_name=collection.model_name,
            model_fingerprint=collection.model_fingerprint,
            n_vectors=index.ntotal,
        )
    except BaseException:
        # A full disk (or a kill) mid-write: the live version stays as it was; the half-written
        # folder goes now, so the space it took is free for the next try.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with db.session() as s:
        s.add(
            IndexVersion(
                collection_id=collection.id,
                kind=kind,
                version=number,
                folder=str(info.folder),
                generation=generation,
                n_vectors=index.ntotal,
                plan={"plan": index.plan.to_dict(), "params": index.params, "tuning": index.tuning, "mode": mode},
            )
        )
    return PublishResult(kind, mode, info, added, removed, time.perf_counter() - start, index.plan)
