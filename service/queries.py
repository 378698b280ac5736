"""The service's operations, as async functions the routes call: caches, filters, batching.

Hot path of ``/v1/search`` (text -> audio):
  1. one Redis MGET for the result page and the text's embedding (both miss on a cold query);
  2. on a result hit: answer (keys carry the collection, index version and generation, so a
     newly published index can never be answered from an older one's cache);
  3. filters -> allowed ids (SQL, in a worker thread);
  4. one micro-batched work item: embed (unless cached) + FAISS search + metadata join;
  5. the embedding and the page go back into Redis after the response is on its way.
Redis is always optional: down or unset, every lookup is a miss and nothing else changes.

Cache reads run ON the event loop: a local Redis answers an MGET in ~0.1 ms, while a hop to the
thread pool and back cost ~0.9 ms per request on 2 busy cores (bench/service.py). A Redis that
stops answering costs one ``redis_timeout_s`` (0.25 s) stall, after which the cache's circuit
breaker skips it for 2 s; writes always go to the thread pool, after the answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from starlette.concurrency import run_in_threadpool

from indexer import paging
from indexer import query as core
from indexer.hybrid import fuse_words, words_need_rows, words_ranking
from indexer.query import SearchRequest
from indexer.store.analyses import analysis_token
from indexer.store.schema import vector_from_bytes
from service.inference import EmbedAudio, EmbedTexts, SearchQuery
from service.problems import ProblemError
from service.uploads import decode_upload

if TYPE_CHECKING:
    from indexer.search import Searcher
    from service.runtime import Runtime

__all__ = ["SearchRequest", "search", "audio_vector", "text_vectors"]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _background(fn, *args) -> None:
    """Run a cache write off the request path (its failure is the cache's business)."""
    asyncio.get_running_loop().run_in_executor(None, fn, *args)


# ----------------------------------------------------------------------------- embeddings


def _embedding_key(rt: Runtime, text: str) -> str:
    return rt.embedding_key_prefix + _digest(text)


async def text_vectors(rt: Runtime, texts: list[str]) -> np.ndarray:
    """(n, D) unit vectors of ``texts``: from process memory, then Redis, the rest in one batched call."""
    keys = [_embedding_key(rt, t) for t in texts]
    out = np.empty((len(texts), rt.encoder.dim), np.float32)
    local = rt.text_vector_cache.get_many(keys)
    shared_keys = [k for k, v in zip(keys, local) if v is None]
    start = time.perf_counter()
    shared = rt.cache.get_many(shared_keys) if shared_keys and rt.cache.enabled else [None] * len(shared_keys)
    rt.metrics.observe("cache", time.perf_counter() - start)
    from_redis = iter(shared)
    missing: list[int] = []
    for i, vector in enumerate(local):
        if vector is None:
            blob = next(from_redis)
            if blob is None:
                missing.append(i)
                continue
            vector = vector_from_bytes(blob)
            rt.text_vector_cache.put(keys[i], vector)
        out[i] = vector
    rt.metrics.cache.labels("embedding", "hit").inc(len(texts) - len(missing))
    rt.metrics.cache.labels("embedding", "miss").inc(len(missing))
    if missing:
        fresh = await rt.batcher.submit(EmbedTexts([texts[i] for i in missing]))
        out[missing] = fresh
        for i in missing:
            rt.text_vector_cache.put(keys[i], out[i])
        if rt.cache.enabled:
            ttl = rt.settings.embedding_cache_ttl_s
            _background(rt.cache.set_many, [(keys[i], out[i].astype("<f4").tobytes(), ttl) for i in missing])
    return out


# ----------------------------------------------------------------------------- search


def _with_urls(record: dict) -> dict:
    item = record["id"]
    return {**record, "audio_url": f"/v1/items/{item}/audio", "peaks_url": f"/v1/items/{item}/peaks"}


async def _allowed(rt: Runtime, searcher: Searcher, req: SearchRequest, kind: str | None = None):
    if not req.filters.active:
        return None
    start = time.perf_counter()
    ids = await run_in_threadpool(core.filter_ids, rt.store, searcher.collection.id, req, kind)
    rt.metrics.observe("database", time.perf_counter() - start)
    return ids


def _version_token(folder: Path) -> str:
    """Unique to one published version on one disk: ids and version numbers restart at 1 when a
    database is recreated or another deployment shares the Redis, inode + mtime do not."""
    try:
        st = (folder / "version.json").stat()
        return f"{st.st_dev:x}.{st.st_ino:x}.{st.st_mtime_ns:x}"
    except OSError:
        return "gone"


def _result_key(searcher: Searcher, req: SearchRequest, query_id: str) -> str:
    v = searcher.version
    analysed = analysis_token(searcher.store.index_dir, searcher.collection.name)  # tempo/key shown and filtered
    return f"res:{v.collection_id}:{req.kind}:{v.version}:{v.generation}:{_version_token(v.folder)}:" + _digest(
        analysed,
        str(v.folder),
        query_id,
        str(req.limit),
        str(req.offset),
        str(req.max_offset),
        repr(req.min_score),
        repr(req.min_relevance),
        req.filters.key(),
        req.mode,
    )


async def search(
    rt: Runtime,
    req: SearchRequest,
    *,
    text: str | None = None,
    vector: np.ndarray | None = None,
    exclude_file: int | None = None,
    query_id: str | None = None,
) -> dict:
    """One page of hits for a text or a vector; ``exclude_file`` drops the query's own file."""
    started = time.perf_counter()
    mode = core.search_mode(req, text_query=text is not None)
    searcher = rt.searcher(req.collection, req.kind)
    version = searcher.version
    result_key = _result_key(searcher, req, query_id) if query_id is not None else None
    emb_key = _embedding_key(rt, text) if text is not None and vector is None else None
    keys = [k for k in (result_key, emb_key) if k]
    cached: list[bytes | None] = [None] * len(keys)
    if keys and rt.cache.enabled:
        t0 = time.perf_counter()
        cached = rt.cache.get_many(keys)
        rt.metrics.observe("cache", time.perf_counter() - t0)
    found = dict(zip(keys, cached))
    cached_result = found.get(result_key) if result_key is not None else None
    page = json.loads(cached_result) if cached_result is not None else None
    if isinstance(page, dict):  # a bare list: cached by a release without `total`, a miss
        rt.metrics.cache.labels("result", "hit").inc()
        return _response(rt, req, version, page, started, cached=True)
    if result_key is not None:
        rt.metrics.cache.labels("result", "miss" if rt.cache.enabled else "skip").inc()
    if emb_key is not None:
        blob = found.get(emb_key)
        rt.metrics.cache.labels(
            "embedding", "hit" if blob is not None else ("miss" if rt.cache.enabled else "skip")
        ).inc()
        if blob is not None:
            vector = vector_from_bytes(blob)
    allowed = await _allowed(rt, searcher, req)
    k = core.vector_depth(req, exclude_file, mode)
    words = _words_meanwhile(rt, searcher, req, mode, text, allowed)
    try:
        outcome = await rt.batcher.submit(
            SearchQuery(searcher, k, vector=vector, text=None if vector is not None else text, allowed_ids=allowed)
        )
    except BaseException:
        if words is not None:  # the request failed first: the words' own outcome answers nobody
            words.add_done_callback(lambda done: done.cancelled() or done.exception())
        raise
    ranked = await words if words is not None else []
    hits = outcome.hits
    if text is not None and mode != "audio":
        hits = await _fused(rt, mode, ranked, outcome.vector, hits)
    if req.kind == "segments":
        hits = await _with_short_files(rt, req, searcher, outcome.vector, k, hits)
    relevance_of = core.relevance_for(rt.manifest, outcome.vector, text_query=text is not None, req=req)
    total = paging.known_total(
        req, hits, k, exclude_file, relevance_of, index_size=searcher.index.ntotal, allowed=allowed, mode=mode
    )
    if total is None:
        total = await _deep_total(rt, req, searcher, outcome.vector, allowed, exclude_file, relevance_of, text, mode)
    page = {"items": [_with_urls(r) for r in core.page_of(req, hits, exclude_file, relevance_of)], "total": total}
    if rt.cache.enabled:
        writes = []
        if emb_key is not None and vector is None:
            writes.append((emb_key, outcome.vector.astype("<f4").tobytes(), rt.settings.embedding_cache_ttl_s))
        if result_key is not None:
            writes.append((result_key, json.dumps(page).encode(), rt.settings.result_cache_ttl_s))
        if writes:
            _background(rt.cache.set_many, writes)
    return _response(rt, req, version, page, started, cached=False)


def _words_meanwhile(rt: Runtime, searcher: Searcher, req: SearchRequest, mode: str, text: str | None, allowed):
    """The words' ranking of a text query (hybrid, text), started in a worker thread before the
    query goes to the inference thread: it needs no vector, so the database lookups run while the
    text is embedded instead of after it (one thread hop and ~0.2-2 ms less per miss)."""
    if text is None or mode == "audio":
        return None
    started = time.perf_counter()

    def ranking():
        try:
            return words_ranking(rt.store, searcher.collection.id, req, mode, text, allowed)
        finally:
            rt.metrics.observe("database", time.perf_counter() - started)

    return asyncio.ensure_future(run_in_threadpool(ranking))


async def _fused(rt: Runtime, mode: str, ranked, vector: np.ndarray, hits):
    """``fuse_words`` on the event loop when it needs no database rows (the usual hybrid miss:
    no word matched, or the words' files are among the vector hits), else in a worker thread."""
    if not words_need_rows(ranked, hits):
        return fuse_words(rt.store, mode, ranked, vector, hits)
    start = time.perf_counter()
    fused = await run_in_threadpool(fuse_words, rt.store, mode, ranked, vector, hits)
    rt.metrics.observe("database", time.perf_counter() - start)
    return fused


async def _deep_total(
    rt: Runtime, req: SearchRequest, searcher: Searcher, vector, allowed, exclude_file, relevance_of, text, mode
):
    """``total`` where the page's candidates do not show it (thresholds, moments, words): one more
    search, to paging's reach (``indexer.paging.known_total``). In a worker thread, not through the
    micro-batcher: stacked there, its deep ``k`` would deepen every query of its batch."""
    deep = paging.reach_request(req)
    k = core.vector_depth(deep, exclude_file, mode)
    files = rt.searcher(req.collection, "files") if req.kind == "segments" else None
    files_allowed = await _allowed(rt, files, req, "files") if files is not None else None

    def count() -> int:
        query = np.asarray(vector, np.float32)[None]
        hits = searcher.search_vectors(query, k, allowed_ids=allowed)[0]
        if text is not None and mode != "audio":
            hits = core.with_words(rt.store, searcher.collection.id, deep, mode, text, query[0], hits, allowed)
        if files is not None:  # short files join a moment search whole, as on the page
            file_hits = files.search_vectors(query, k, allowed_ids=files_allowed)[0]
            hits = core.merge_short_files(hits, file_hits, searcher.collection.segment_seconds or 0.0)
        return paging.total_hits(req, hits, exclude_file, relevance_of)

    return await run_in_threadpool(count)


async def _with_short_files(rt: Runtime, req: SearchRequest, segment_searcher: Searcher, vector, k: int, segment_hits):
    """Short files join a moment search by their file vector (``indexer.query.merge_short_files``)."""
    files_searcher = rt.searcher(req.collection, "files")
    allowed = await _allowed(rt, files_searcher, req, "files")
    outcome = await rt.batcher.submit(SearchQuery(files_searcher, k, vector=vector, allowed_ids=allowed))
    return core.merge_short_files(segment_hits, outcome.hits, segment_searcher.collection.segment_seconds or 0.0)


def _response(rt: Runtime, req, version, page: dict, started, *, cached: bool) -> dict:
    """The list envelope every list answers with (``items``, ``total``, ``limit``, ``offset``)."""
    return {
        "collection": req.collection,
        "model": rt.manifest.name,
        "index_version": version.version,
        "took_ms": round((time.perf_counter() - started) * 1000, 3),
        "cached": cached,
        "items": page["items"],
        "total": page["total"],
        "limit": req.limit,
        "offset": req.offset,
    }


# ----------------------------------------------------------------------------- audio input


async def audio_vector(rt: Runtime, upload, item_id: int | None) -> tuple[np.ndarray, str]:
    """The query vector of an uploaded clip or an indexed item, and a name for it."""
    if (upload is None) == (item_id is None):
        raise ProblemError(
            "request.audio_source", "send either a multipart `file` upload or an item `id`, not both or neither"
        )
    if item_id is not None:
        start = time.perf_counter()
        vector = await run_in_threadpool(core.stored_vector, rt.store, item_id)
        rt.metrics.observe("database", time.perf_counter() - start)
        return vector, f"item:{item_id}"
    loop = asyncio.get_running_loop()
    embedded = loop.create_future()

    def decode_then_embed(path: Path, *, limits):
        # the decode thread queues the views for the inference thread itself: the embedding
        # starts without waiting for the event loop to wake up and pass them on
        views, duration = rt.encoder.views_from_file(path, limits=limits)
        if not embedded.cancelled():
            rt.batcher.enqueue(EmbedAudio(views), embedded, loop)
        return views, duration

    start = time.perf_counter()
    try:
        await decode_upload(rt, upload, decode_then_embed)
    except BaseException:
        embedded.cancel()  # a decode past its deadline may still finish: nobody waits for its embedding
        raise
    rt.metrics.observe("decode", time.perf_counter() - start)
    return await embedded, upload.filename or "upload"


# ----------------------------------------------------------------------------- labels


async def vocabulary_vectors(rt: Runtime) -> np.ndarray:
    return await run_in_threadpool(rt.vocabulary.vectors, rt.encoder.embed_text)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max()
    e = np.exp(z)
    return e / e.sum()


def logit_scale(rt: Runtime) -> float:
    """The model's learned audio->text temperature (CLAP's logit_scale_a), else CLIP's 100."""
    return float(rt.manifest.logit_scale_audio or 100.0)


def rank_against_vocabulary(cosines: np.ndarray, vocabulary_cosines: np.ndarray) -> np.ndarray:
    """Multi-label score of each label: the share of the vocabulary's labels it beats for this
    clip (0..1). Independent per label, comparable across clips, no softmax competition."""
    ordered = np.sort(vocabulary_cosines)
    return np.searchsorted(ordered, cosines, side="left") / max(1, len(ordered))
