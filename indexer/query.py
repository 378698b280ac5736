"""Search behaviour, owned by the core: what a query means, how many candidates it needs, how
moments and short files share one ranking, what relevance is, and what a page of hits holds.

The CLI runs it directly::

    page = run_search(store, SearchRequest("default", limit=10, filters=SearchFilters(tags=("rain",))),
                      text="rain on a tin roof")
    page.items, page.total       # one page of hits; how many hits paging can walk (``known_total``)

The service runs the same steps with its cache and micro-batcher around the two costly calls
(embedding and the FAISS search, ``service/queries.py``), so ``indexer search`` and
``/v1/search`` give the same answers (``tests/service/test_cli_parity.py`` holds them to it).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select

from indexer import errors
from indexer.filters import SearchFilters, allowed_ids
from indexer.fulltext import FUSION_DEPTH, MODES
from indexer.hybrid import with_words
from indexer.ingest.discover import os_path
from indexer.paging import Relevance, known_total, passing_hits, reach_request, total_hits
from indexer.search import Hit, Searcher
from indexer.store.schema import STATUS_INDEXED, Collection, File, FileVector, vector_from_bytes

if TYPE_CHECKING:
    from indexer.models.manifest import Manifest
    from indexer.store.store import Store

MAX_QUERY_CHARS = 1000
MAX_OFFSET = 1000  # the deepest page offset, by default (the service's CLAPSEARCH_MAX_OFFSET)
MAX_ITEM_ID = 2**63 - 1  # database ids are signed 64-bit; a larger one can name nothing
SEGMENT_SELF_MARGIN = 64  # a long file's own windows all sit near its query: look past them
MOMENT_OVERSAMPLE = 4  # overlapping windows fold into one moment: fetch more to fill a page


@dataclass(frozen=True)
class SearchRequest:
    collection: str
    limit: int = 10
    offset: int = 0
    min_score: float | None = None
    segments: bool = False
    filters: SearchFilters = SearchFilters()
    min_relevance: float | None = None  # text queries on calibrated models (manifest.score_calibration)
    max_offset: int = MAX_OFFSET  # paging's reach: ``total`` counts hits up to max_offset + limit
    mode: str = "hybrid"  # text queries: hybrid (words + sound), audio (vectors only) or text (words only)

    @property
    def kind(self) -> str:
        return "segments" if self.segments else "files"


def check_query_text(q: str | None) -> str:
    text = (q or "").strip()
    if not text:
        raise errors.EmptyTextError("the query text is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise errors.TextTooLongError(f"the query has {len(text)} characters; the limit is {MAX_QUERY_CHARS}")
    return text


def candidates_needed(req: SearchRequest, exclude_file: int | None) -> int:
    """How many hits to ask the index for so that the page is full after dropping the query's own file."""
    k = req.offset + req.limit + (1 if exclude_file is not None else 0)
    if req.segments:
        k *= MOMENT_OVERSAMPLE
        if exclude_file is not None:
            k += SEGMENT_SELF_MARGIN
    return k


def search_mode(req: SearchRequest, *, text_query: bool) -> str:
    """The ranking this query gets. Words rank whole files for text queries: a query by example
    (an upload, a similar item) and a moment search rank by sound, which the default ``hybrid``
    quietly becomes; asking for ``text`` there is refused."""
    if req.mode not in MODES:
        raise errors.SearchModeError(f"mode {req.mode!r} is not one of {', '.join(MODES)}")
    if req.mode == "audio" or (text_query and not req.segments):
        return req.mode
    if req.mode == "text":
        raise errors.SearchModeError(
            "mode=text ranks whole files by their words: it needs a text query and no segments "
            f"(this is {'a moment search' if req.segments else 'a query by example'}); use mode=audio or hybrid"
        )
    return "audio"


def vector_depth(req: SearchRequest, exclude_file: int | None, mode: str) -> int:
    """Hits to take from the vector index: a fused page needs the top of the whole ranking."""
    k = candidates_needed(req, exclude_file)
    return max(k, FUSION_DEPTH) if mode == "hybrid" else k


def filter_ids(store: Store, collection_id: int, req: SearchRequest, kind: str | None = None) -> np.ndarray | None:
    """The allowed-id set for ``req``'s filters on one index (None: no filter, search everything)."""
    if not req.filters.active:
        return None
    return allowed_ids(store.db, collection_id, kind or req.kind, req.filters)


def merge_short_files(segment_hits: list[Hit], file_hits: list[Hit], window_s: float) -> list[Hit]:
    """Segment search covers every file: long files by their windows (the segments index holds
    only files longer than a window), short ones by their file vector, spanning the whole file."""
    short = [
        Hit(
            id=-h.file_id,
            score=h.score,
            file_id=h.file_id,
            path=h.path,
            duration_s=h.duration_s,
            format=h.format,
            tags=h.tags,
            start_s=0.0,
            end_s=h.duration_s,
            analysis=h.analysis,
        )
        for h in file_hits
        if h.duration_s is not None and h.duration_s <= window_s
    ]
    return sorted(segment_hits + short, key=lambda h: -h.score)


def relevance_for(
    manifest: Manifest, query_vector: np.ndarray, *, text_query: bool, req: SearchRequest
) -> Relevance | None:
    """This query's calibrated relevance (cosine -> 0..1), or None where the model has no
    calibration or the query is audio (the calibration was fitted on text/audio pairs)."""
    calibration = manifest.score_calibration if text_query else None
    if req.min_relevance is not None and calibration is None:
        raise errors.RelevanceUnavailableError(
            "min_relevance needs a text query and a model with a score calibration "
            f"(this query is {'text' if text_query else 'audio'}; model {manifest.name} "
            f"{'has' if manifest.score_calibration else 'has no'} calibration); use min_score"
        )
    if calibration is None:
        return None
    peak = calibration.query_peak(query_vector)
    return lambda cosine: calibration.relevance(cosine, peak)


def hit_record(hit: Hit, kind: str, relevance_of: Relevance | None = None) -> dict:
    """One hit as users see it (the CLI's ``--json`` and the API, which adds its URLs)."""
    relevance = round(relevance_of(hit.score), 6) if relevance_of is not None else None
    return {
        "id": hit.file_id,
        "score": round(hit.score, 6),
        "relevance": relevance,
        "path": hit.path,
        "name": Path(hit.path).name,
        "duration_s": hit.duration_s,
        "format": hit.format,
        "tags": dict(hit.tags or {}),
        "start_s": hit.start_s,
        "end_s": hit.end_s,
        "segment_id": hit.id if kind == "segments" and hit.id > 0 else None,
        "analysis": hit.analysis,  # tempo, key and loudness; None until `indexer analyze` ran
    }


def page_of(
    req: SearchRequest, hits: list[Hit], exclude_file: int | None, relevance_of: Relevance | None = None
) -> list[dict]:
    """The requested page of ``passing_hits``, as users see it."""
    kept = passing_hits(req, hits, exclude_file, relevance_of)
    return [hit_record(h, req.kind, relevance_of) for h in kept[req.offset : req.offset + req.limit]]


# ----------------------------------------------------------------------------- items
def item_row(store: Store, item_id: int) -> tuple[File, Collection]:
    """An item's row and its collection's, detached from the session."""
    if not 1 <= item_id <= MAX_ITEM_ID:
        raise errors.ItemNotFoundError(f"no item has id {item_id}")
    with store.db.session() as s:
        row = s.get(File, item_id)
        if row is None:
            raise errors.ItemNotFoundError(f"no item has id {item_id}")
        collection = s.get(Collection, row.collection_id)
        assert collection is not None, "files.collection_id is a foreign key"
        s.expunge(row)
        s.expunge(collection)
        return row, collection


def stored_vector(store: Store, item_id: int) -> np.ndarray:
    """An indexed item's vector, refused when another model than the store's made it."""
    manifest = store.manifest
    row, collection = item_row(store, item_id)
    blob = None
    if row.status == STATUS_INDEXED:
        with store.db.session() as s:
            blob = s.scalar(select(FileVector.vector).where(FileVector.file_id == item_id))
    if blob is None:
        raise errors.ItemNotIndexedError(f"item {item_id} failed to ingest ({row.error_code}): {row.error}")
    if collection.model_fingerprint != manifest.fingerprint:
        raise errors.ModelMismatchError(
            f"item {item_id} was embedded by model {collection.model_name!r}, not the served {manifest.name!r}"
        )
    return vector_from_bytes(blob).copy()


class ItemAudio:
    """An indexed item's file, opened for serving; ``path`` names exactly the opened file
    (``/proc/self/fd/N`` where the OS has it), so swapping the file after the checks serves
    nothing else. Close it when the response is sent."""

    def __init__(self, fd: int, path: str, name: str, size: int):
        self.fd, self.path, self.name, self.size = fd, path, name, size

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def open_item_audio(row: File, roots: Sequence[Path] = ()) -> ItemAudio:
    """Open an item's file to serve it, refusing what the catalogue did not index: a failed
    row, a remote file, a file that is now a symlink (opened with ``O_NOFOLLOW``), not a regular
    file (a FIFO must not hang the request), or, under one of ``roots`` (the service's allowed
    ingest roots), a path whose real location left the roots (a folder swapped for a symlink).
    The path is re-checked at every request: the disk may have changed since the ingest."""

    def refuse(why: str) -> errors.ItemAudioUnavailableError:
        return errors.ItemAudioUnavailableError(f"item {row.id}'s file cannot be served: {why}")

    if row.status != STATUS_INDEXED:
        raise refuse(f"it failed to ingest ({row.error_code})")
    if "://" in row.path:
        raise refuse("it is not on this server's disk")
    path = os_path(row.path)
    if not os.path.isabs(path):
        raise refuse("it is not on this server's disk")
    lexical = os.path.normpath(path)
    real_roots = [os.path.realpath(r) for r in roots]
    for root, real in zip(roots, real_roots):
        if _inside(lexical, os.path.normpath(os.path.abspath(root))) or _inside(lexical, real):
            if not _inside(os.path.realpath(path), real):
                raise refuse("its path now leads outside the allowed folders")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:  # ELOOP: the file itself was replaced by a symlink
        reason = "it is now a symlink" if exc.errno == errno.ELOOP else (exc.strerror or "unreadable")
        raise refuse(reason) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refuse("it is not a regular file")
        if st.st_size == 0:  # emptied since the ingest: a 200 with no body would look like silence
            raise refuse("the file is now empty")
        by_fd = f"/proc/self/fd/{fd}"
        served = by_fd if os.path.exists(by_fd) else path
    except BaseException:
        os.close(fd)
        raise
    return ItemAudio(fd, served, Path(row.path).name, st.st_size)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# ----------------------------------------------------------------------------- the direct path


@dataclass(frozen=True)
class SearchPage:
    items: list[dict]  # this page's hits (``hit_record``)
    total: int  # how many hits paging can walk (``known_total``)


def run_search(
    store: Store,
    req: SearchRequest,
    *,
    text: str | None = None,
    vector: np.ndarray | None = None,
    exclude_file: int | None = None,
) -> SearchPage:
    """One page of hits for a text or a vector, and their total, without the service's cache and batching."""
    text_query = vector is None or text is not None
    mode = search_mode(req, text_query=text_query)
    if text_query:
        text = check_query_text(text)
    if vector is None:
        vector = store.encoder().embed_text([check_query_text(text)])[0]
    query = np.asarray(vector, np.float32)[None]
    searcher = Searcher(store, req.collection, kind=req.kind)
    allowed = filter_ids(store, searcher.collection.id, req)
    files = Searcher(store, req.collection) if req.segments else None
    files_allowed = filter_ids(store, files.collection.id, req, "files") if files is not None else None

    def candidates(r: SearchRequest, k: int) -> list[Hit]:
        hits = searcher.search_vectors(query, k, allowed_ids=allowed)[0]
        if text is not None and mode != "audio":
            hits = with_words(store, searcher.collection.id, r, mode, text, query[0], hits, allowed)
        if files is not None:
            file_hits = files.search_vectors(query, k, allowed_ids=files_allowed)[0]
            hits = merge_short_files(hits, file_hits, searcher.collection.segment_seconds or 0.0)
        return hits

    k = vector_depth(req, exclude_file, mode)
    hits = candidates(req, k)
    relevance_of = relevance_for(store.manifest, query[0], text_query=text_query, req=req)
    total = known_total(
        req, hits, k, exclude_file, relevance_of, index_size=searcher.index.ntotal, allowed=allowed, mode=mode
    )
    if total is None:
        deep = reach_request(req)
        total = total_hits(req, candidates(deep, vector_depth(deep, exclude_file, mode)), exclude_file, relevance_of)
    return SearchPage(page_of(req, hits, exclude_file, relevance_of), total)
