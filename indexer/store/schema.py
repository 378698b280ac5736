"""The metadata database: one row per collection, file, segment and published index version.

Vectors (float32 bytes) live in their own tables, ``file_vectors`` and ``segment_vectors``, one
row per file or segment keyed by its id, committed in the same transaction as the metadata, so a
file is either fully ingested (row + vector + segments + their vectors) or absent: a killed ingest
can never leave a vector without its row or the reverse (the foreign keys cascade on delete).
They are kept out of ``files`` and ``segments`` so the metadata rows stay small: a search hit's
join (path, duration, tags) reads a few hundred bytes a row, not a 2 KB vector beside it, and
many rows share a page. FAISS indexes are built from these rows and
published as versions (``indexer.store.versions``); their int64 ids ARE ``files.id`` and
``segments.id``.

``generation`` orders writes: every ingest commit stamps its rows with the collection's next
generation, and an index version records the generation it contains, so a publish only has to
add the rows stamped later (and remove ids that no longer exist).

The alembic migrations in ``indexer/store/migrations`` create exactly this schema; a test
compares the two.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; elsewhere ids are 64-bit like FAISS's.
Id = BigInteger().with_variant(Integer, "sqlite")

STATUS_INDEXED = "indexed"
STATUS_FAILED = "failed"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Collection(Base):
    """A named index: its files were all embedded by one model (``model_fingerprint``)."""

    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_fingerprint: Mapped[str] = mapped_column(String(80))
    model_variant: Mapped[str] = mapped_column(String(40))
    manifest: Mapped[dict] = mapped_column(JSON)
    dim: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(20), default="inner_product")
    segment_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    segment_hop_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class File(Base):
    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("collection_id", "path", name="uq_files_collection_path"),
        Index("ix_files_collection_status", "collection_id", "status"),
        Index("ix_files_collection_generation", "collection_id", "generation"),
        Index("ix_files_content_hash", "collection_id", "content_hash"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    format: Mapped[str | None] = mapped_column(String(40), nullable=True)
    subtype: Mapped[str | None] = mapped_column(String(40), nullable=True)
    sample_rate: Mapped[int | None] = mapped_column(Integer, nullable=True)
    channels: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tags: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # the file's name, folders and tag values split into words, for the full-text index that the
    # migrations build on it (FTS5 table + triggers in SQLite, a GIN index in PostgreSQL: see
    # indexer/fulltext.py); written with the row by catalog.write_files
    words: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(60), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    n_segments: Mapped[int] = mapped_column(Integer, default=0)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# Full-text objects the migrations create beside the models (alembic's autogenerate cannot
# describe an FTS5 virtual table or an expression index): schema comparisons leave them out.
FULLTEXT_OBJECTS = ("files_fts", "ix_files_words_fts")


def is_fulltext_object(name: str | None) -> bool:
    return bool(name) and any(str(name) == n or str(name).startswith(n + "_") for n in FULLTEXT_OBJECTS)


class Segment(Base):
    """A window of a long file (``start_s``..``end_s``) with its own vector."""

    __tablename__ = "segments"
    __table_args__ = (
        Index("ix_segments_file", "file_id"),
        Index("ix_segments_collection_generation", "collection_id", "generation"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


class FileVector(Base):
    """The vector of an indexed file (a failed file has none)."""

    __tablename__ = "file_vectors"
    file_id: Mapped[int] = mapped_column(
        Id, ForeignKey("files.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class SegmentVector(Base):
    """The vector of one segment."""

    __tablename__ = "segment_vectors"
    segment_id: Mapped[int] = mapped_column(
        Id, ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class FileAnalysis(Base):
    """Musical analysis of one file (``indexer analyze``, ``indexer ingest --analyze``): tempo,
    key and loudness, or ``error`` when the file could not be analysed.

    It describes the bytes whose hash is ``content_hash``: once the file changes (its row gets
    a new hash) the analysis is stale, filters ignore it and the next analysis run redoes it.
    A value is null when the file has none worth reporting (no steady beat, no tonal centre,
    silence), never a guess.
    """

    __tablename__ = "file_analyses"
    __table_args__ = (Index("ix_file_analyses_tempo", "tempo_bpm"), Index("ix_file_analyses_key", "key"))
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tempo_bpm: Mapped[float | None] = mapped_column(Float, nullable=True)
    tempo_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    key: Mapped[str | None] = mapped_column(String(16), nullable=True)  # "A minor", "F# major"
    key_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    loudness_lufs: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    analyzed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IndexVersion(Base):
    """One published FAISS index (``kind`` files or segments) of a collection."""

    __tablename__ = "index_versions"
    __table_args__ = (UniqueConstraint("collection_id", "kind", "version", name="uq_index_versions"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    folder: Mapped[str] = mapped_column(Text)
    generation: Mapped[int] = mapped_column(BigInteger)
    n_vectors: Mapped[int] = mapped_column(BigInteger)
    plan: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def vector_table(kind: str) -> tuple[Any, Any, Any]:
    """(row table, vector table, the vector table's id column) of ``kind`` "files" or "segments"."""
    if kind == "files":
        return File, FileVector, FileVector.file_id
    if kind == "segments":
        return Segment, SegmentVector, SegmentVector.segment_id
    raise ValueError(f"kind must be 'files' or 'segments', not {kind!r}")


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def vector_from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")
