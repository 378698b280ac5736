"""Collections and their rows: the only code that writes ``files``, ``segments`` and their vectors
(``file_vectors``, ``segment_vectors``).

A collection is bound to one model: ``open_collection`` refuses a model whose fingerprint differs
from the one the collection was built with (``indexer rebuild`` moves a collection to a new
model). Every ingest commit takes a fresh ``generation`` number for the rows it writes; index
publishing uses it to find what changed since the last version.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from indexer.errors import CollectionNameError, CollectionNotFoundError, ModelMismatchError, StoreError
from indexer.fulltext import words_for
from indexer.models.manifest import Manifest
from indexer.store.db import Database
from indexer.store.schema import (
    STATUS_FAILED,
    STATUS_INDEXED,
    Collection,
    File,
    FileVector,
    Segment,
    SegmentVector,
    utcnow,
    vector_bytes,
)

log = logging.getLogger("indexer.store")

_IN_CHUNK = 500  # paths per IN (...) query: well under SQLite's variable limit

# THE collection-name rule (CLI, store and service all call check_collection_name): a name is a
# folder under the index directory and a lock file in it, so '.', '..', '...' or '.hidden' would
# land on (or above) the index folder itself and break every listing afterwards.
COLLECTION_NAME_MAX = 64
COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
_COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)
_SHADOW_SUFFIX = "~rebuild"  # indexer/ingest/rebuild.py's shadow collection, never user-given


@dataclass(frozen=True)
class SegmentSpec:
    """Segment vectors: ``seconds``-long windows every ``hop`` seconds, for files longer than
    ``seconds`` (shorter files are one segment already: their file vector)."""

    seconds: float = 10.0
    hop: float = 5.0

    def __post_init__(self) -> None:
        if not (self.seconds > 0 and 0 < self.hop <= self.seconds):
            raise ValueError("segments need seconds > 0 and 0 < hop <= seconds")


@dataclass(frozen=True)
class KnownFile:
    id: int
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str


@dataclass
class FileRecord:
    """What an ingest learned about one file; ``vector`` is None when ``error_code`` is set."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str | None = None
    duration_s: float | None = None
    format: str | None = None
    subtype: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    tags: dict | None = None
    vector: np.ndarray | None = None
    segments: list[tuple[float, float, np.ndarray]] | None = None
    error_code: str | None = None
    error: str | None = None


# ----------------------------------------------------------------------------- collections


def check_collection_name(name: str, *, shadow_ok: bool = False) -> str:
    """``name`` when it is a valid collection name: 1-64 characters of ``[A-Za-z0-9_.-]`` not
    starting with '.' or '-' (so no dot-only name, no hidden folder, no option look-alike).
    ``shadow_ok``: the store also accepts rebuild's ``<name>~rebuild``."""
    base = (
        name[: -len(_SHADOW_SUFFIX)] if shadow_ok and isinstance(name, str) and name.endswith(_SHADOW_SUFFIX) else name
    )
    if not isinstance(base, str) or not _COLLECTION_NAME.fullmatch(base):
        shown = repr(name)[:80] if isinstance(name, str) else type(name).__name__
        raise CollectionNameError(
            f"collection name {shown} is not allowed: use 1-{COLLECTION_NAME_MAX} letters, digits, '_', "
            "'.' or '-', starting with a letter, digit or '_'"
        )
    return name


def open_collection(
    db: Database, name: str, manifest: Manifest, variant: str, segments: SegmentSpec | None = None
) -> Collection:
    """The collection ``name``, created for this model if new; refuses another model's."""
    check_collection_name(name, shadow_ok=True)
    with db.session() as s:
        found = s.scalars(select(Collection).where(Collection.name == name)).one_or_none()
        if found is not None:
            check_model(found, manifest)
            if segments is not None and found.segment_seconds is None:
                found.segment_seconds, found.segment_hop_seconds = segments.seconds, segments.hop
            return found
        created = Collection(
            name=name,
            model_name=manifest.name,
            model_fingerprint=manifest.fingerprint,
            model_variant=variant,
            manifest=manifest.model_dump(mode="json"),
            dim=manifest.embed_dim,
            segment_seconds=segments.seconds if segments else None,
            segment_hop_seconds=segments.hop if segments else None,
            generation=0,
        )
        s.add(created)
        s.flush()
        return created


def check_model(collection: Collection, manifest: Manifest) -> None:
    if collection.model_fingerprint != manifest.fingerprint:
        raise ModelMismatchError(
            f"collection {collection.name!r} holds vectors of model {collection.model_name!r} "
            f"({collection.model_fingerprint}), not {manifest.name!r} ({manifest.fingerprint}); "
            f"use `indexer rebuild --collection {collection.name} --model ...` to move it to a new model"
        )


def get_collection(db: Database, name: str) -> Collection:
    with db.session() as s:
        found = s.scalars(select(Collection).where(Collection.name == name)).one_or_none()
    if found is None:
        raise CollectionNotFoundError(
            f"no collection named {name!r} in {db.url.split('://')[0]} database; "
            f"known: {[c.name for c in list_collections(db)]}"
        )
    return found


def list_collections(db: Database) -> list[Collection]:
    """Every collection, less any whose name breaks the rule: created before the rule by an
    older version ('.', '..'), it has no usable index folder and used to fail every listing
    (`indexer status`, ``GET /v1/collections``). It is logged instead, with the way out."""
    with db.session() as s:
        rows = list(s.scalars(select(Collection).order_by(Collection.name)))
    kept = []
    for row in rows:
        try:
            check_collection_name(row.name, shadow_ok=True)
            kept.append(row)
        except CollectionNameError:
            log.warning(
                "collection id %s has a name no version may use (%r); it is not listed: delete "
                "its rows (collections.id = %s) or rename it in the database",
                row.id,
                row.name,
                row.id,
            )
    return kept


def segment_spec(collection: Collection) -> SegmentSpec | None:
    if collection.segment_seconds is None:
        return None
    return SegmentSpec(collection.segment_seconds, collection.segment_hop_seconds or collection.segment_seconds)


def delete_collection(db: Database, name: str) -> None:
    with db.session() as s:
        s.execute(delete(Collection).where(Collection.name == name))


# ----------------------------------------------------------------------------- files


def known_files(db: Database, collection_id: int, paths: Sequence[str]) -> dict[str, KnownFile]:
    """What the database already holds for these paths (one query per 500 paths)."""
    out: dict[str, KnownFile] = {}
    with db.session() as s:
        for i in range(0, len(paths), _IN_CHUNK):
            rows = s.execute(
                select(File.path, File.id, File.size, File.mtime_ns, File.content_hash, File.status).where(
                    File.collection_id == collection_id, File.path.in_(paths[i : i + _IN_CHUNK])
                )
            )
            for path, file_id, size, mtime_ns, content_hash, status in rows:
                out[path] = KnownFile(file_id, size, mtime_ns, content_hash, status)
    return out


def touch_files(db: Database, collection_id: int, updates: Iterable[tuple[int, int]]) -> None:
    """Record a new mtime for files whose content hash proved them unchanged: (id, mtime_ns)."""
    with db.session() as s:
        for file_id, mtime_ns in updates:
            s.execute(
                update(File).where(File.id == file_id, File.collection_id == collection_id).values(mtime_ns=mtime_ns)
            )


def write_files(db: Database, collection_id: int, records: Sequence[FileRecord]) -> None:
    """Insert or replace these files (and their segments) in ONE transaction.

    A replaced file keeps its id (clients may hold it); its segments are rewritten. The whole
    batch carries one new generation number.
    """
    if not records:
        return
    with db.session() as s:
        generation = next_generation(s, collection_id)
        existing = {
            path: fid
            for path, fid in s.execute(
                select(File.path, File.id).where(
                    File.collection_id == collection_id, File.path.in_([r.path for r in records])
                )
            )
        }
        if existing:
            replaced = list(existing.values())
            s.execute(delete(Segment).where(Segment.file_id.in_(replaced)))  # their vectors cascade
            s.execute(delete(FileVector).where(FileVector.file_id.in_(replaced)))
        now = utcnow()
        file_vectors: list[dict] = []
        segments: list[tuple[Segment, np.ndarray]] = []
        for r in records:
            values = dict(
                collection_id=collection_id,
                path=r.path,
                size=r.size,
                mtime_ns=r.mtime_ns,
                content_hash=r.content_hash,
                duration_s=r.duration_s,
                format=r.format,
                subtype=r.subtype,
                sample_rate=r.sample_rate,
                channels=r.channels,
                tags=r.tags,
                words=words_for(r.path, r.tags),  # the full-text index follows by trigger / GIN index
                status=STATUS_FAILED if r.error_code else STATUS_INDEXED,
                error_code=r.error_code,
                error=r.error,
                n_segments=len(r.segments or ()),
                generation=generation,
                updated_at=now,
            )
            file_id = existing.get(r.path)
            if file_id is None:
                row = File(**values)
                s.add(row)
                s.flush()
                file_id = row.id
            else:
                s.execute(update(File).where(File.id == file_id).values(**values))
            if r.vector is not None:
                file_vectors.append(dict(file_id=file_id, vector=vector_bytes(r.vector)))
            for start, end, v in r.segments or ():
                segment = Segment(
                    file_id=file_id, collection_id=collection_id, start_s=start, end_s=end, generation=generation
                )
                segments.append((segment, v))
                s.add(segment)
        s.flush()  # segment ids for their vectors
        if file_vectors:
            s.execute(insert(FileVector), file_vectors)
        if segments:
            s.execute(insert(SegmentVector), [dict(segment_id=seg.id, vector=vector_bytes(v)) for seg, v in segments])


def remove_files(db: Database, collection_id: int, file_ids: Sequence[int]) -> int:
    """Delete files (their segments go with them); the next publish drops their vectors."""
    removed = 0
    with db.session() as s:
        for i in range(0, len(file_ids), _IN_CHUNK):
            chunk = list(file_ids[i : i + _IN_CHUNK])
            s.execute(delete(Segment).where(Segment.file_id.in_(chunk)))
            # the stubs type Session.execute as Result; a DELETE's is a CursorResult, with rowcount
            deleted = s.execute(delete(File).where(File.collection_id == collection_id, File.id.in_(chunk)))
            removed += deleted.rowcount or 0  # type: ignore[attr-defined]
        if removed:
            next_generation(s, collection_id)
    return removed


def file_ids_under(db: Database, collection_id: int, prefixes: Sequence[str]) -> list[int]:
    """Ids of files whose path equals a prefix or lies below it (a folder)."""
    ids: list[int] = []
    with db.session() as s:
        for prefix in prefixes:
            folder = prefix.rstrip("/") + "/"
            ids.extend(
                s.scalars(
                    select(File.id).where(
                        File.collection_id == collection_id,
                        (File.path == prefix) | (func.substr(File.path, 1, len(folder)) == folder),
                    )
                )
            )
    return sorted(set(ids))


def iter_file_paths(db: Database, collection_id: int, batch: int = 5000) -> Iterator[tuple[int, str]]:
    """(id, path) of every file, in id order, in pages (bounded memory)."""
    last = 0
    while True:
        with db.session() as s:
            rows = s.execute(
                select(File.id, File.path)
                .where(File.collection_id == collection_id, File.id > last)
                .order_by(File.id)
                .limit(batch)
            ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def next_generation(s: Session, collection_id: int) -> int:
    s.execute(
        update(Collection)
        .where(Collection.id == collection_id)
        .values(generation=Collection.generation + 1, updated_at=utcnow())
    )
    generation = s.scalar(select(Collection.generation).where(Collection.id == collection_id))
    if generation is None:
        raise StoreError(f"collection id {collection_id} vanished during a write")
    return int(generation)
