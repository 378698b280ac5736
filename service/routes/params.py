"""Query parameters shared by the search routes (text, audio and similar search)."""

from __future__ import annotations

from fastapi import Depends, File, Query, Request, UploadFile

from indexer.filters import SearchFilters
from indexer.query import SearchRequest
from service.problems import ProblemError


async def search_request(   # async: a sync dependency would cost a thread hop per request
    request: Request,
    collection: str | None = Query(None, description="collection to search (default: the configured one)",
                                   max_length=200),
    limit: int = Query(10, ge=1, description="results per page; capped at CLAPSEARCH_MAX_LIMIT"),
    offset: int = Query(0, ge=0, description="skip this many results (pagination)"),
    min_score: float | None = Query(None, ge=-1, le=1, description="drop hits below this cosine"),
    min_relevance: float | None = Query(None, ge=0, le=1, description=(
        "text queries: drop hits whose calibrated relevance (0..1, the same meaning for every query; "
        "0.5 = as likely a match as not) is below this; needs a model with a score calibration")),
    min_duration: float | None = Query(None, ge=0, description="seconds"),
    max_duration: float | None = Query(None, ge=0, description="seconds"),
    format: list[str] = Query([], description="container formats to keep, e.g. WAV, FLAC, MP3 (repeatable)"),
    tag: list[str] = Query([], description="'rain' (any tag contains it) or 'genre:ambient' (repeatable)"),
    path_prefix: str | None = Query(None, description="only files whose path starts with this"),
    segments: bool = Query(False, description="search 10 s windows inside long files; hits carry "
                                              "start_s/end_s"),
) -> SearchRequest:
    settings = request.app.state.settings
    if offset > settings.max_offset:
        raise ProblemError("request.offset", f"offset {offset} is past CLAPSEARCH_MAX_OFFSET={settings.max_offset}; "
                           "narrow the query with filters instead")
    if min_duration is not None and max_duration is not None and min_duration > max_duration:
        raise ProblemError("request.invalid", "min_duration > max_duration")
    return SearchRequest(
        collection=collection or settings.default_collection, limit=min(limit, settings.max_limit),
        offset=offset, min_score=min_score, segments=segments, min_relevance=min_relevance,
        filters=SearchFilters(min_duration=min_duration, max_duration=max_duration,
                              formats=tuple(f for f in format if f), tags=tuple(t for t in tag if t),
                              path_prefix=path_prefix or None))


SearchParams = Depends(search_request)
AudioUpload = File(None, description="an audio clip (WAV, FLAC, Ogg, Opus, MP3, AIFF...)")
ItemId = Query(None, alias="id", ge=1, description="an indexed item's id instead of an upload")


def optional_upload(file: UploadFile | None) -> UploadFile | None:
    """Browsers send an empty part when no file was chosen; treat it as absent."""
    if file is None or (not file.filename and not file.size):
        return None
    return file
