"""Words plus sound in one ranking: a text query's hits in ``mode`` text or hybrid, from the
vector hits and the words index (``indexer/fulltext.py``); ``indexer/query.py`` (the CLI) and
``service/queries.py`` (the API) call :func:`with_words`, or its two halves (:func:`words_ranking`,
:func:`fuse_words`) where the words can be looked up while the query is embedded."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select

from indexer.fulltext import FUSION_DEPTH, fuse, text_order, text_ranking
from indexer.search import Hit
from indexer.store.schema import STATUS_INDEXED, File, FileVector, vector_from_bytes

if TYPE_CHECKING:
    from indexer.query import SearchRequest
    from indexer.store.store import Store


def with_words(
    store: Store,
    collection_id: int,
    req: SearchRequest,
    mode: str,
    text: str,
    query_vector: np.ndarray,
    vector_hits: list[Hit],
    allowed: np.ndarray | None,
) -> list[Hit]:
    """The hits of a text query in ``mode``: the vector hits as they are (audio), the files whose
    words match (text, ordered by the words, then by cosine) or both rankings fused (hybrid).
    Filters (``allowed``) apply to both rankings before the fusion; every hit keeps its cosine
    as ``score``, so thresholds and relevance mean the same in every mode."""
    ranked = words_ranking(store, collection_id, req, mode, text, allowed)
    return fuse_words(store, mode, ranked, query_vector, vector_hits)


def words_ranking(
    store: Store, collection_id: int, req: SearchRequest, mode: str, text: str, allowed: np.ndarray | None
) -> list[tuple[int, float]]:
    """The words' side of :func:`with_words` (empty in mode audio). It needs no query vector, so
    the API looks it up in a worker thread while the text is being embedded."""
    if mode == "audio":
        return []
    depth = req.offset + req.limit
    return text_ranking(store.db, collection_id, text, max(depth, FUSION_DEPTH) if mode == "hybrid" else depth, allowed)


def words_need_rows(ranked: list[tuple[int, float]], vector_hits: list[Hit]) -> bool:
    """Whether :func:`fuse_words` reads the database (files the words found that the vector hits
    do not hold); when not, it is a few dict operations that need no worker thread."""
    held = {h.file_id for h in vector_hits}
    return any(i not in held for i, _ in ranked)


def fuse_words(
    store: Store, mode: str, ranked: list[tuple[int, float]], query_vector: np.ndarray, vector_hits: list[Hit]
) -> list[Hit]:
    """The vector hits and the words' ranking (:func:`words_ranking`) as one list in ``mode``."""
    if mode == "audio" or (not ranked and mode == "hybrid"):
        return vector_hits  # no word of the query is in the index: hybrid is audio search
    by_id = {h.file_id: h for h in vector_hits}
    by_id.update(_scored_rows(store, [i for i, _ in ranked if i not in by_id], query_vector))
    cosines = {i: h.score for i, h in by_id.items()}
    words_order = text_order(ranked, cosines)
    order = words_order if mode == "text" else fuse([h.file_id for h in vector_hits], words_order, cosines)
    return [by_id[i] for i in order if i in by_id]


def _scored_rows(store: Store, ids: list[int], query_vector: np.ndarray) -> dict[int, Hit]:
    """Hits for files the words found but the vector page did not hold, scored by their stored vector."""
    if not ids:
        return {}
    query = np.asarray(query_vector, np.float32).ravel()
    with store.db.session() as s:
        rows = s.execute(
            select(File.id, File.path, File.duration_s, File.format, File.tags, FileVector.vector)
            .join(FileVector, FileVector.file_id == File.id)
            .where(File.id.in_(ids), File.status == STATUS_INDEXED)
        ).all()
    out = {}
    for file_id, path, duration_s, fmt, tags, blob in rows:
        vector = vector_from_bytes(blob) if blob is not None else None
        if vector is None or vector.shape != query.shape:  # a corrupt row (indexer check) cannot rank
            continue
        score = float(vector @ query)
        out[file_id] = Hit(
            id=file_id, score=score, file_id=file_id, path=path, duration_s=duration_s, format=fmt, tags=tags
        )
    return out
