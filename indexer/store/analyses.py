"""The ``file_analyses`` rows: which files still need a tempo/key/loudness analysis, writing
results, and reading them back for hits, items and filters.

An analysis counts only for the bytes it was made from (``content_hash``): a file rewritten by
a later ingest is pending again, and its old values are neither shown nor matched by filters.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from indexer.store.db import Database
from indexer.store.schema import STATUS_INDEXED, File, FileAnalysis, utcnow

_IN_CHUNK = 500
STAMP = "analysis.stamp"
FIELDS = ("tempo_bpm", "tempo_confidence", "key", "key_confidence", "loudness_lufs")


@dataclass(frozen=True)
class AnalysisValues:
    """One file's analysis as users see it; every value may be None (see ``FileAnalysis``)."""

    tempo_bpm: float | None = None
    tempo_confidence: float | None = None
    key: str | None = None
    key_confidence: float | None = None
    loudness_lufs: float | None = None
    error: str | None = None  # the file could not be analysed (kept out of hits and items)

    def public(self) -> dict:
        return {name: getattr(self, name) for name in FIELDS}


@dataclass(frozen=True)
class PendingFile:
    id: int
    path: str
    content_hash: str | None


def current() -> ColumnElement[bool]:
    """Join condition: the analysis row of a file that describes its present content."""
    return and_(FileAnalysis.file_id == File.id, FileAnalysis.content_hash == File.content_hash)


def pending_files(db: Database, collection_id: int, *, after_id: int = 0, limit: int = 500) -> list[PendingFile]:
    """Indexed files with no analysis of their present content, in id order (a page)."""
    query = (
        select(File.id, File.path, File.content_hash)
        .outerjoin(FileAnalysis, FileAnalysis.file_id == File.id)
        .where(
            File.collection_id == collection_id,
            File.status == STATUS_INDEXED,
            File.id > after_id,
            or_(FileAnalysis.file_id.is_(None), FileAnalysis.content_hash.is_distinct_from(File.content_hash)),
        )
        .order_by(File.id)
        .limit(limit)
    )
    with db.session() as s:
        return [PendingFile(*row) for row in s.execute(query)]


def count_analysed(db: Database, collection_id: int) -> int:
    query = (
        select(func.count()).select_from(File).join(FileAnalysis, current()).where(File.collection_id == collection_id)
    )
    with db.session() as s:
        return int(s.execute(query).scalar_one())


def write_analyses(db: Database, results: Sequence[tuple[PendingFile, AnalysisValues]]) -> None:
    """Store (or replace) these files' analyses in one transaction."""
    if not results:
        return
    with db.session() as s:
        ids = [pending.id for pending, _ in results]
        s.execute(delete(FileAnalysis).where(FileAnalysis.file_id.in_(ids)))
        # a file removed meanwhile has no row to hang an analysis on: skip it
        alive = set(s.scalars(select(File.id).where(File.id.in_(ids))))
        now = utcnow()
        s.add_all(
            FileAnalysis(file_id=pending.id, content_hash=pending.content_hash, analyzed_at=now, **asdict(values))
            for pending, values in results
            if pending.id in alive
        )


def analyses_of(db: Database, file_ids: Sequence[int]) -> dict[int, dict]:
    """file id -> its current analysis (``AnalysisValues.public``) for the ids that have one."""
    out: dict[int, dict] = {}
    ids = sorted({int(i) for i in file_ids})
    with db.session() as s:
        for i in range(0, len(ids), _IN_CHUNK):
            rows = s.execute(
                select(File.id, *(getattr(FileAnalysis, name) for name in FIELDS))
                .join(FileAnalysis, current())
                .where(File.id.in_(ids[i : i + _IN_CHUNK]))
            )
            for file_id, *values in rows:
                out[file_id] = dict(zip(FIELDS, values))
    return out


def mark_analysed(index_dir: Path, collection: str) -> None:
    """Touch the collection's analysis stamp: the service's result cache keys on it, so pages
    cached before an analysis run are not served with stale (or missing) tempo and key."""
    stamp = Path(index_dir) / collection / STAMP
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()
    os.utime(stamp)


def analysis_token(index_dir: Path, collection: str) -> str:
    """Changes whenever ``mark_analysed`` ran (one stat, no database query)."""
    try:
        st = (Path(index_dir) / collection / STAMP).stat()
    except OSError:
        return "none"
    return f"{st.st_ino:x}.{st.st_mtime_ns:x}"
