"""Query a published collection: text or audio in, ranked files (or moments inside long files)
out, with their metadata. The CLI's ``indexer search`` and the service share it.

    searcher = Searcher(store, "default")                       # files index
    searcher.search_text("glass breaking", k=10)
    Searcher(store, "default", kind="segments").search_audio("clip.wav")   # with start/end

The searcher refuses an index built by another model than the store's (ModelMismatchError)
and picks up a newly published version with :meth:`reload_if_changed` (no restart).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import null, select

from indexer.errors import StoreError
from indexer.store import versions
from indexer.store.analyses import analyses_of
from indexer.store.schema import File, Segment
from indexer.store.vector_index import VectorIndex

if TYPE_CHECKING:
    from indexer.store.store import Store


@dataclass(frozen=True)
class Hit:
    id: int  # file id (files index) or segment id (segments index)
    score: float  # cosine similarity
    file_id: int
    path: str
    duration_s: float | None
    format: str | None
    tags: dict | None = field(default=None, hash=False)
    start_s: float | None = None
    end_s: float | None = None
    analysis: dict | None = field(default=None, hash=False)  # tempo, key, loudness (indexer analyze)


class Searcher:
    def __init__(self, store: Store, collection: str, *, kind: str = "files"):
        self.store = store
        self.collection = store.collection(collection)
        self.kind = kind
        self._lock = threading.Lock()
        live = versions.current_version(store.index_dir, self.collection.name, kind)
        if live is None:
            raise StoreError(
                f"collection {collection!r} has no published {kind} index yet (run `indexer ingest` first)"
            )
        self.version: versions.VersionInfo = live
        self.index: VectorIndex = self._open(live)

    def reload_if_changed(self) -> bool:
        """Load the live version if it is not the one in use; True when it switched."""
        live = versions.current_version(self.store.index_dir, self.collection.name, self.kind)
        if live is None or live.folder == self.version.folder:
            return False
        index = self._open(live)
        with self._lock:
            self.version, self.index = live, index
        return True

    def _open(self, live: versions.VersionInfo) -> VectorIndex:
        live.check_model(self.store.manifest.fingerprint, self.store.manifest.name)
        return VectorIndex.load(live.folder)

    # ------------------------------------------------------------------ queries
    def search_vectors(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        allowed_ids: np.ndarray | None = None,
        timings: dict[str, float] | None = None,
    ) -> list[list[Hit]]:
        """Top-``k`` hits per query row. ``timings``, when given, receives the seconds spent in
        the index (``search``) and in the metadata join (``database``), for the service's metrics."""
        with self._lock:
            index = self.index
        started = time.perf_counter()
        scores, ids = index.search(np.ascontiguousarray(queries, np.float32), k, allowed_ids=allowed_ids)
        searched = time.perf_counter()
        rows = self._rows(sorted({int(i) for i in ids.ravel() if i >= 0}))
        if timings is not None:
            timings["search"] = timings.get("search", 0.0) + searched - started
            timings["database"] = timings.get("database", 0.0) + time.perf_counter() - searched
        out = []
        for q in range(len(queries)):
            hits = []
            for score, i in zip(scores[q], ids[q]):
                row = rows.get(int(i))
                if i < 0 or row is None:  # deleted since this version was published
                    continue
                hits.append(Hit(id=int(i), score=float(score), **row))
            out.append(hits)
        return out

    def search_text(self, text: str, k: int = 10, **kwargs) -> list[Hit]:
        return self.search_vectors(self.store.encoder().embed_text([text]), k, **kwargs)[0]

    def search_audio(self, path: str | Path, k: int = 10, **kwargs) -> list[Hit]:
        encoder = self.store.encoder()
        views, _ = encoder.views_from_file(path)
        return self.search_vectors(encoder.embed_views([views]), k, **kwargs)[0]

    def _rows(self, ids: list[int]) -> dict[int, dict]:
        if not ids:
            return {}
        with self.store.db.session() as s:
            if self.kind == "files":
                result = s.execute(
                    select(File.id, File.id, File.path, File.duration_s, File.format, File.tags, null(), null()).where(
                        File.id.in_(ids)
                    )
                )
            else:
                result = s.execute(
                    select(
                        Segment.id,
                        File.id,
                        File.path,
                        File.duration_s,
                        File.format,
                        File.tags,
                        Segment.start_s,
                        Segment.end_s,
                    )
                    .join(File, File.id == Segment.file_id)
                    .where(Segment.id.in_(ids))
                )
            rows = {
                r[0]: dict(file_id=r[1], path=r[2], duration_s=r[3], format=r[4], tags=r[5], start_s=r[6], end_s=r[7])
                for r in result
            }
        found = analyses_of(self.store.db, [row["file_id"] for row in rows.values()])
        for row in rows.values():
            row["analysis"] = found.get(row["file_id"])
        return rows
