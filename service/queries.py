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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from starlette.concurrency import run_in_threadpool

from indexer import errors as core
from indexer.search import Hit
from indexer.store.schema import STATUS_INDEXED, Collection, File, vector_from_bytes
from service.filters import SearchFilters, allowed_ids
from service.inference import EmbedAudio, EmbedTexts, SearchQuery
from service.problems import ProblemError
from service.uploads import stored_upload

MAX_QUERY_CHARS = 1000


@dataclass(frozen=True)
class SearchRequest:
    collection: str
    limit: int
    offset: int = 0
    min_score: float | None = None
    segments: bool = False
    filters: SearchFilters = SearchFilters()
    min_relevance: float | None = None   # text queries on calibrated models (manifest.score_calibration)

    @property
    def kind(self) -> str:
        return "segments" if self.segments else "files"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _background(fn, *args) -> None:
    """Run a cache write off the request path (its failure is the cache's business)."""
    asyncio.get_running_loop().run_in_executor(None, fn, *args)


def check_query(q: str) -> str:
    text = (q or "").strip()
    if not text:
        raise ProblemError(422, "text", "Text could not be used", "the query text is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise ProblemError(422, "text.too_long", "Query too long",
                           f"the query has {len(text)} characters; the limit is {MAX_QUERY_CHARS}")
    return text


# ----------------------------------------------------------------------------- embeddings

def _embedding_key(rt, text: str) -> str:
    return f"emb:{rt.manifest.fingerprint[:16]}:{rt.store.variant}:{_digest(text)}"


async def text_vectors(rt, texts: list[str]) -> np.ndarray:
    """(n, D) unit vectors of ``texts``: from the embedding cache, the rest in one batched call."""
    keys = [_embedding_key(rt, t) for t in texts]
    start = time.perf_counter()
    cached = rt.cache.get_many(keys) if rt.cache.enabled else [None] * len(texts)
    rt.metrics.observe("cache", time.perf_counter() - start)
    missing = [i for i, blob in enumerate(cached) if blob is None]
    rt.metrics.cache.labels("embedding", "hit").inc(len(texts) - len(missing))
    rt.metrics.cache.labels("embedding", "miss").inc(len(missing))
    out = np.empty((len(texts), rt.encoder.dim), np.float32)
    for i, blob in enumerate(cached):
        if blob is not None:
            out[i] = vector_from_bytes(blob)
    if missing:
        fresh = await rt.batcher.submit(EmbedTexts([texts[i] for i in missing]))
        out[missing] = fresh
        if rt.cache.enabled:
            ttl = rt.settings.embedding_cache_ttl_s
            _background(lambda: [rt.cache.set(keys[i], out[i].astype("<f4").tobytes(), ttl)
                                     for i in missing])
    return out


# ----------------------------------------------------------------------------- search

def _hit_json(hit: Hit, kind: str, relevance_of=None) -> dict:
    relevance = round(relevance_of(hit.score), 6) if relevance_of is not None else None
    return {"id": hit.file_id, "score": round(hit.score, 6), "relevance": relevance,
            "path": hit.path, "name": Path(hit.path).name,
            "duration_s": hit.duration_s, "format": hit.format, "tags": hit.tags or None,
            "start_s": hit.start_s, "end_s": hit.end_s,
            "segment_id": hit.id if kind == "segments" and hit.id > 0 else None,
            "audio_url": f"/v1/items/{hit.file_id}/audio", "peaks_url": f"/v1/items/{hit.file_id}/peaks"}


def _page(req: SearchRequest, hits: list[Hit], exclude_file: int | None, relevance_of=None) -> list[dict]:
    """``relevance_of(cosine)``: this text query's calibrated relevance (None for audio queries)."""
    if exclude_file is not None:
        hits = [h for h in hits if h.file_id != exclude_file]
    if req.min_score is not None:
        hits = [h for h in hits if round(h.score, 6) >= req.min_score]   # as the scores are shown
    if req.min_relevance is not None and relevance_of is not None:
        hits = [h for h in hits if round(relevance_of(h.score), 6) >= req.min_relevance]
    return [_hit_json(h, req.kind, relevance_of) for h in hits[req.offset : req.offset + req.limit]]


async def _allowed(rt, searcher, req: SearchRequest):
    if not req.filters.active:
        return None
    start = time.perf_counter()
    ids = await run_in_threadpool(allowed_ids, rt.store.db, searcher.collection.id, req.kind, req.filters)
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


def _result_key(searcher, req: SearchRequest, query_id: str) -> str:
    v = searcher.version
    return (f"res:{v.collection_id}:{req.kind}:{v.version}:{v.generation}:{_version_token(v.folder)}:"
            + _digest(str(v.folder), query_id, str(req.limit), str(req.offset), repr(req.min_score),
                      repr(req.min_relevance), req.filters.key()))


async def search(rt, req: SearchRequest, *, text: str | None = None, vector: np.ndarray | None = None,
                 exclude_file: int | None = None, query_id: str | None = None) -> dict:
    """One page of hits for a text or a vector; ``exclude_file`` drops the query's own file."""
    started = time.perf_counter()
    searcher = rt.searcher(req.collection, req.kind)
    version = searcher.version
    result_key = _result_key(searcher, req, query_id) if query_id is not None else None
    emb_key = _embedding_key(rt, text) if text is not None and vector is None else None
    keys = [k for k in (result_key, emb_key) if k]
    cached = [None] * len(keys)
    if keys and rt.cache.enabled:
        t0 = time.perf_counter()
        cached = rt.cache.get_many(keys)
        rt.metrics.observe("cache", time.perf_counter() - t0)
    found = dict(zip(keys, cached))
    if result_key is not None and found.get(result_key) is not None:
        rt.metrics.cache.labels("result", "hit").inc()
        results = json.loads(found[result_key])
        return _response(rt, req, version, results, started, cached=True)
    if result_key is not None:
        rt.metrics.cache.labels("result", "miss" if rt.cache.enabled else "skip").inc()
    if emb_key is not None:
        blob = found.get(emb_key)
        rt.metrics.cache.labels("embedding", "hit" if blob is not None else
                                ("miss" if rt.cache.enabled else "skip")).inc()
        if blob is not None:
            vector = vector_from_bytes(blob)
    allowed = await _allowed(rt, searcher, req)
    k = req.offset + req.limit + (1 if exclude_file is not None else 0)
    if req.kind == "segments" and exclude_file is not None:
        k += 64    # a long file's own windows are all near the query; look past them
    outcome = await rt.batcher.submit(SearchQuery(searcher, k, vector=vector, text=None if vector is not None
                                                  else text, allowed_ids=allowed))
    hits = outcome.hits
    if req.kind == "segments":
        hits = await _with_short_files(rt, req, searcher, outcome.vector, k, hits)
    calibration = rt.manifest.score_calibration if text is not None else None
    if req.min_relevance is not None and calibration is None:
        raise ProblemError(422, "request.min_relevance", "Relevance not available",
                           "min_relevance needs a text query and a model with a score calibration "
                           f"(this query is {'text' if text is not None else 'audio'}; model "
                           f"{rt.manifest.name} {'has' if rt.manifest.score_calibration else 'has no'} "
                           "calibration); use min_score")
    relevance_of = None
    if calibration is not None:
        peak = calibration.query_peak(outcome.vector)
        relevance_of = lambda cosine: calibration.relevance(cosine, peak)  # noqa: E731
    results = _page(req, hits, exclude_file, relevance_of)
    if rt.cache.enabled:
        writes = []
        if emb_key is not None and vector is None:
            writes.append((emb_key, outcome.vector.astype("<f4").tobytes(), rt.settings.embedding_cache_ttl_s))
        if result_key is not None:
            writes.append((result_key, json.dumps(results).encode(), rt.settings.result_cache_ttl_s))
        if writes:
            _background(lambda: [rt.cache.set(*w) for w in writes])
    return _response(rt, req, version, results, started, cached=False)


async def _with_short_files(rt, req: SearchRequest, segment_searcher, vector, k: int, segment_hits):
    """Segment search covers every file: long files by their windows (the segments index holds
    only files longer than a window), short ones by their file vector, spanning the whole file."""
    files_req = SearchRequest(req.collection, req.limit, req.offset, req.min_score, False, req.filters,
                              req.min_relevance)
    files_searcher = rt.searcher(req.collection, "files")
    window = segment_searcher.collection.segment_seconds or 0.0
    allowed = await _allowed(rt, files_searcher, files_req)
    outcome = await rt.batcher.submit(SearchQuery(files_searcher, k, vector=vector, allowed_ids=allowed))
    short = [Hit(id=-h.file_id, score=h.score, file_id=h.file_id, path=h.path, duration_s=h.duration_s,
                 format=h.format, tags=h.tags, start_s=0.0, end_s=h.duration_s)
             for h in outcome.hits if h.duration_s is not None and h.duration_s <= window]
    return sorted(segment_hits + short, key=lambda h: -h.score)


def _response(rt, req, version, results, started, *, cached: bool) -> dict:
    return {"collection": req.collection, "model": rt.manifest.name, "index_version": version.version,
            "took_ms": round((time.perf_counter() - started) * 1000, 3), "cached": cached,
            "limit": req.limit, "offset": req.offset, "results": results}


# ----------------------------------------------------------------------------- audio input

def _stored_vector(rt, item_id: int) -> np.ndarray:
    with rt.store.db.session() as s:
        row = s.get(File, item_id)
        collection = s.get(Collection, row.collection_id) if row is not None else None
    if row is None:
        raise ProblemError(404, "item.not_found", "No such item", f"no indexed item has id {item_id}")
    if row.status != STATUS_INDEXED or row.vector is None:
        raise ProblemError(409, "item.not_indexed", "Item has no vector",
                           f"item {item_id} failed to ingest ({row.error_code}): {row.error}")
    if collection.model_fingerprint != rt.manifest.fingerprint:
        raise core.ModelMismatchError(f"item {item_id} was embedded by model {collection.model_name!r}, "
                                      f"not the served {rt.manifest.name!r}")
    return vector_from_bytes(row.vector).copy()


async def audio_vector(rt, upload, item_id: int | None) -> tuple[np.ndarray, str]:
    """The query vector of an uploaded clip or an indexed item, and a name for it."""
    if (upload is None) == (item_id is None):
        raise ProblemError(422, "request.audio_source", "Send one audio source",
                           "send either a multipart `file` upload or an item `id`, not both or neither")
    if item_id is not None:
        start = time.perf_counter()
        vector = await run_in_threadpool(_stored_vector, rt, item_id)
        rt.metrics.observe("database", time.perf_counter() - start)
        return vector, f"item:{item_id}"
    async with stored_upload(upload, max_seconds=rt.settings.max_upload_seconds) as path:
        start = time.perf_counter()
        async with rt.decode_slots:
            views, _ = await run_in_threadpool(rt.encoder.views_from_file, path)
        rt.metrics.observe("decode", time.perf_counter() - start)
    vector = await rt.batcher.submit(EmbedAudio(views))
    return vector, upload.filename or "upload"


# ----------------------------------------------------------------------------- labels

async def vocabulary_vectors(rt) -> np.ndarray:
    return await run_in_threadpool(rt.vocabulary.vectors, rt.encoder.embed_text)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max()
    e = np.exp(z)
    return e / e.sum()


def logit_scale(rt) -> float:
    """The model's learned audio->text temperature (CLAP's logit_scale_a), else CLIP's 100."""
    return float(rt.manifest.logit_scale_audio or 100.0)


def rank_against_vocabulary(cosines: np.ndarray, vocabulary_cosines: np.ndarray) -> np.ndarray:
    """Multi-label score of each label: the share of the vocabulary's labels it beats for this
    clip (0..1). Independent per label, comparable across clips, no softmax competition."""
    ordered = np.sort(vocabulary_cosines)
    return np.searchsorted(ordered, cosines, side="left") / max(1, len(ordered))
