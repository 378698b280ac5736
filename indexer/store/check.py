"""``indexer check``: prove that rows, vectors and the published indexes agree, and repair
what does not.

The database is the source of truth. Checks, per collection:
* every stored vector has the model's dimension, finite values and unit norm (a damaged row is
  marked failed with ``store.corrupt_vector`` and its stat zeroed, so the next ingest re-embeds
  the file);
* each published index holds exactly the live ids (nothing missing, nothing deleted);
* the index was built with the collection's model and is not behind the database.
Repair re-publishes from the database (a full rebuild when the ids disagree).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import delete, select, update

from indexer.errors import CorruptVectorError, VectorIndexError
from indexer.store import catalog, vector_rows, versions
from indexer.store.schema import STATUS_FAILED, STATUS_INDEXED, Collection, File, FileVector, Segment, vector_table

if TYPE_CHECKING:
    from indexer.store.store import Store


@dataclass
class CheckReport:
    collection: str
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems or bool(self.repaired)


def _bad_vectors(store: Store, collection: Collection, kind: str) -> list[int]:
    bad: list[int] = []
    table, vectors, key = vector_table(kind)
    last = 0
    while True:
        # an outer join: a live row whose vector row is missing is damaged too
        query = (
            select(table.id, vectors.vector)
            .outerjoin(vectors, key == table.id)
            .where(table.collection_id == collection.id, table.id > last)
        )
        if table is File:
            query = query.where(File.status == STATUS_INDEXED)
        with store.db.session() as s:
            rows = s.execute(query.order_by(table.id).limit(20_000)).all()
        if not rows:
            return bad
        for row_id, blob in rows:
            if blob is None or len(blob) != 4 * collection.dim:
                bad.append(row_id)
                continue
            v = np.frombuffer(blob, "<f4")
            if not np.all(np.isfinite(v)) or abs(float(v @ v) - 1.0) > 1e-3:
                bad.append(row_id)
        last = rows[-1][0]


def check_collection(store: Store, name: str, *, repair: bool = False) -> CheckReport:
    collection = store.collection(name)
    report = CheckReport(name)
    kinds = ["files"] + (["segments"] if collection.segment_seconds else [])
    rebuild = False
    for kind in kinds:
        bad = _bad_vectors(store, collection, kind)
        if bad:
            report.problems.append(f"{kind}: {len(bad)} stored vectors are damaged (ids {bad[:5]}...)")
            if repair:
                _quarantine(store, collection, kind, bad)
                report.repaired.append(f"{kind}: {len(bad)} damaged rows marked for re-embedding")
                rebuild = True
        live = versions.current_version(store.index_dir, name, kind)
        ids = vector_rows.live_ids(store.db, collection.id, kind)
        if live is None:
            if len(ids):
                report.problems.append(f"{kind}: {len(ids)} vectors but no published index")
            continue
        if live.model_fingerprint != collection.model_fingerprint or live.collection_id != collection.id:
            report.problems.append(f"{kind}: live index {live.folder.name} belongs to another model or collection")
            rebuild = True
            continue
        from indexer.store.vector_index import VectorIndex

        try:
            held = VectorIndex.load(live.folder).ids()
        except VectorIndexError as exc:  # truncated, damaged: repair rebuilds it from the rows
            report.problems.append(f"{kind}: live index {live.folder.name} is unreadable ({exc})")
            rebuild = True
            continue
        missing = np.setdiff1d(ids, held)
        extra = np.setdiff1d(held, ids)
        if len(missing) or len(extra):
            behind = live.generation < collection.generation
            report.problems.append(
                f"{kind}: index {live.folder.name} lacks {len(missing)} live ids and holds {len(extra)} "
                f"deleted ones" + (" (unpublished changes: an ingest was interrupted?)" if behind else "")
            )
            rebuild = rebuild or not behind
    if repair and report.problems:
        with store.lock(name):
            results = store.publish(store.collection(name), force_rebuild=rebuild)
        report.repaired.extend(
            f"{r.kind}: published {r.version.folder.name if r.version else '-'} ({r.mode})" for r in results
        )
    return report


def _quarantine(store: Store, collection: Collection, kind: str, ids: list[int]) -> None:
    with store.db.session() as s:
        if kind == "files":
            s.execute(
                update(File)
                .where(File.id.in_(ids))
                .values(
                    status=STATUS_FAILED,
                    error_code=CorruptVectorError.code,
                    size=-1,
                    error="stored vector was damaged; the next ingest re-embeds this file",
                )
            )
            s.execute(delete(FileVector).where(FileVector.file_id.in_(ids)))
        else:
            file_ids = s.scalars(select(Segment.file_id).where(Segment.id.in_(ids))).all()
            s.execute(update(File).where(File.id.in_(file_ids)).values(size=-1))
            s.execute(delete(Segment).where(Segment.id.in_(ids)))
        catalog.next_generation(s, collection.id)  # so the next publish sees the change
