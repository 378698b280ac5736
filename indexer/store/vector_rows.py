"""Reading the stored vectors of a collection's rows (``files`` joined to ``file_vectors``,
``segments`` to ``segment_vectors``), page by page: what index publishing, ``indexer check`` and
the duplicate finder stream. ``indexer.store.catalog`` writes them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sqlalchemy import func, select

from indexer.store.db import Database
from indexer.store.schema import STATUS_INDEXED, File, vector_table

_IN_CHUNK = 500  # ids per IN (...) query: well under SQLite's variable limit


def _table(kind: str):
    return vector_table(kind)[0]  # raises ValueError for a kind other than "files" / "segments"


def _with_vectors(kind: str):
    """SELECT id, vector of ``kind``'s rows joined to their vectors (rows without one are left out)."""
    table, vectors, key = vector_table(kind)
    return table, select(table.id, vectors.vector).join(vectors, key == table.id)


def _live(table, collection_id: int):
    where = [table.collection_id == collection_id]
    if table is File:
        where.append(File.status == STATUS_INDEXED)
    return where


def count_vectors(db: Database, collection_id: int, kind: str) -> int:
    table = _table(kind)
    with db.session() as s:
        return int(s.execute(select(func.count()).select_from(table).where(*_live(table, collection_id))).scalar_one())


def live_ids(db: Database, collection_id: int, kind: str) -> np.ndarray:
    """Sorted ids of every vector the collection holds (8 bytes each: 80 MB at 10 M)."""
    table = _table(kind)
    parts, last = [], 0
    while True:
        with db.session() as s:
            ids = s.scalars(
                select(table.id).where(*_live(table, collection_id), table.id > last).order_by(table.id).limit(100_000)
            ).all()
        if not ids:
            break
        parts.append(np.asarray(ids, np.int64))
        last = ids[-1]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def iter_vectors(
    db: Database,
    collection_id: int,
    kind: str,
    *,
    after_generation: int | None = None,
    ids: np.ndarray | None = None,
    batch: int = 20_000,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids int64, vectors float32 (n, D)) pages, in id order: all live vectors, those written
    after ``after_generation``, or exactly ``ids``. Memory: one page at a time."""
    table, query = _with_vectors(kind)
    if ids is not None:
        for i in range(0, len(ids), _IN_CHUNK):
            with db.session() as s:
                rows = s.execute(
                    query.where(
                        *_live(table, collection_id), table.id.in_([int(x) for x in ids[i : i + _IN_CHUNK]])
                    ).order_by(table.id)
                ).all()
            if rows:
                yield _unpack(rows)
        return
    last = 0
    while True:
        page = query.where(*_live(table, collection_id), table.id > last)
        if after_generation is not None:
            page = page.where(table.generation > after_generation)
        with db.session() as s:
            rows = s.execute(page.order_by(table.id).limit(batch)).all()
        if not rows:
            return
        yield _unpack(rows)
        last = rows[-1][0]


def ids_written_after(db: Database, collection_id: int, kind: str, generation: int) -> np.ndarray:
    table = _table(kind)
    with db.session() as s:
        ids = s.scalars(
            select(table.id).where(table.collection_id == collection_id, table.generation > generation)
        ).all()
    return np.asarray(sorted(ids), np.int64)


def _unpack(rows) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
    return ids, vectors.astype(np.float32, copy=True)
