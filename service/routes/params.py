"""Paging and filters shared by the search routes (text, audio and similar search): query
parameters on GET, body fields on POST (``SearchOptions``), one ``SearchRequest`` either way."""

from __future__ import annotations

from typing import Literal

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from indexer.filters import SearchFilters
from indexer.query import SearchRequest
from service.problems import ProblemError
from service.schemas import MODE_DOC, SearchOptions


async def search_request(  # async: a sync dependency would cost a thread hop per request
    request: Request,
    collection: str | None = Query(
        None, description="collection to search (default: the configured one)", max_length=200
    ),
    limit: int = Query(10, ge=1, description="results per page; capped at CLAPSEARCH_MAX_LIMIT"),
    offset: int = Query(0, ge=0, description="skip this many results (pagination)"),
    min_score: float | None = Query(None, ge=-1, le=1, description="drop hits below this cosine"),
    min_relevance: float | None = Query(
        None,
        ge=0,
        le=1,
        description=(
            "text queries: drop hits whose calibrated relevance (0..1, the same meaning for every query; "
            "0.5 = as likely a match as not) is below this; needs a model with a score calibration"
        ),
    ),
    min_duration: float | None = Query(None, ge=0, description="seconds"),
    max_duration: float | None = Query(None, ge=0, description="seconds"),
    format: list[str] = Query([], description="container formats to keep, e.g. WAV, FLAC, MP3 (repeatable)"),
    tag: list[str] = Query([], description="'rain' (any tag contains it) or 'genre:ambient' (repeatable)"),
    path_prefix: str | None = Query(None, description="only files whose path starts with this"),
    segments: bool = Query(False, description="search 10 s windows inside long files; hits carry start_s/end_s"),
    bpm_min: float | None = Query(None, ge=0, le=1000, description="analysed files at least this tempo (BPM)"),
    bpm_max: float | None = Query(None, ge=0, le=1000, description="analysed files at most this tempo (BPM)"),
    key: str | None = Query(
        None,
        max_length=40,
        description="analysed files in this key: 'A minor', 'F# major', 'Bbm' (a note alone: either mode)",
    ),
    mode: Literal["hybrid", "audio", "text"] = Query("hybrid", description=MODE_DOC),
) -> SearchRequest:
    try:  # the Query declarations above already hold all but the list lengths
        options = SearchOptions(
            collection=collection,
            limit=limit,
            offset=offset,
            min_score=min_score,
            min_relevance=min_relevance,
            min_duration=min_duration,
            max_duration=max_duration,
            format=format,
            tag=tag,
            path_prefix=path_prefix,
            segments=segments,
            bpm_min=bpm_min,
            bpm_max=bpm_max,
            key=key,
            mode=mode,
        )
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None
    return search_options(request, options)


def search_options(request: Request, o: SearchOptions) -> SearchRequest:
    settings = request.app.state.settings
    if o.offset > settings.max_offset:
        raise ProblemError(
            "request.offset",
            f"offset {o.offset} is past CLAPSEARCH_MAX_OFFSET={settings.max_offset}; "
            "narrow the query with filters instead",
        )
    if o.min_duration is not None and o.max_duration is not None and o.min_duration > o.max_duration:
        raise ProblemError("request.invalid", "min_duration > max_duration")
    return SearchRequest(
        collection=o.collection or settings.default_collection,
        limit=min(o.limit, settings.max_limit),
        offset=o.offset,
        min_score=o.min_score,
        segments=o.segments,
        min_relevance=o.min_relevance,
        max_offset=settings.max_offset,
        mode=o.mode,
        filters=SearchFilters(
            min_duration=o.min_duration,
            max_duration=o.max_duration,
            formats=tuple(f for f in o.format if f),
            tags=tuple(t for t in o.tag if t),
            path_prefix=o.path_prefix or None,
            bpm_min=o.bpm_min,
            bpm_max=o.bpm_max,
            key_name=o.key or None,
        ),
    )


SearchParams = Depends(search_request)


def optional_upload(file: UploadFile | None) -> UploadFile | None:
    """Browsers send an empty part when no file was chosen; treat it as absent."""
    if file is None or (not file.filename and not file.size):
        return None
    return file
