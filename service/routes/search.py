"""Search: text -> audio, audio -> audio (upload or item id), audio -> text."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from indexer import exports
from indexer.query import SearchRequest, check_query_text
from service import queries
from service.problems import ProblemError
from service.routes.body import BodyFields, Fields, body_doc
from service.routes.exported import exported
from service.routes.params import SearchParams, optional_upload, search_options
from service.schemas import SearchAudioInput, SearchResponse, SearchTextInput, TextsInput, TextsResponse

if TYPE_CHECKING:
    from service.runtime import Runtime

router = APIRouter(tags=["search"])


def _fast_json(body: dict) -> Response:
    """The search answer, serialised once by ``json`` (already plain types): FastAPI's response
    model validation + jsonable_encoder would cost about as much as a FAISS search here. The
    response models still document the shape in OpenAPI, and tests check bodies against them."""
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


_TEXT_DOC = (
    "Text -> audio: the files (or, with `segments=true`, the moments inside long files) "
    "whose sound best matches `q`. Filters apply inside the search, so a page is full "
    "even when few files match."
)


def _answer(name: str, result: dict) -> Response:
    return _fast_json({"query": name, **result})


async def text_search(rt: Runtime, q: str, params: SearchRequest) -> Response:
    """The JSON answer of a text search (this route and its lean twin, ``service/routes/hot.py``)."""
    text = check_query_text(q)
    return _answer(text, await queries.search(rt, params, text=text, query_id="t:" + text))


# output=csv / m3u8 answer a sheet or a playlist instead of JSON: the schema says so (Schemathesis)
_EXPORTS: dict[int | str, dict[str, Any]] = {
    200: {"content": {media: {"schema": {"type": "string"}} for media in exports.MEDIA_TYPES.values()}}
}


@router.get(
    "/v1/search",
    response_model=SearchResponse,
    summary="Search audio by text",
    description=_TEXT_DOC,
    responses=_EXPORTS,
)
@router.get(
    "/search", response_model=SearchResponse, summary="Search audio by text (unversioned alias)", responses=_EXPORTS
)
async def search_text(
    request: Request,
    q: str = Query(
        ...,
        description="what it should sound like",
        examples=["dog barking in the rain"],
        json_schema_extra={"pattern": r"\S"},  # blank is 422 text.empty (checked below)
    ),
    params=SearchParams,
    output: Literal["json", "csv", "m3u8"] = Query(
        "json", description="csv: a sheet of the hits; m3u8: a playlist of their audio for players and DAWs"
    ),
):
    if output == "json":
        return await text_search(request.app.state.runtime, q, params)
    text = check_query_text(q)
    result = await queries.search(request.app.state.runtime, params, text=text, query_id="t:" + text)
    return exported(request, result["items"], output, "search")


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    summary="Search audio by text (fields in the body)",
    description=_TEXT_DOC,
    openapi_extra=body_doc(SearchTextInput, required=True),
)
@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Search audio by text (unversioned alias)",
    description=_TEXT_DOC,
    openapi_extra=body_doc(SearchTextInput, required=True),
)
async def search_text_post(request: Request, fields: Fields = BodyFields):
    body = fields.parse(SearchTextInput, request.query_params)
    return await text_search(request.app.state.runtime, body.q, search_options(request, body))


@router.post(
    "/v1/search/audio",
    response_model=SearchResponse,
    summary="Search audio by example",
    description="Audio -> audio: upload a clip as multipart `file`, or name an indexed item "
    "with `id`; returns the most similar sounds (the item itself excluded).",
    openapi_extra=body_doc(SearchAudioInput, file=True),
)
async def search_audio(request: Request, fields: Fields = BodyFields):
    rt: Runtime = request.app.state.runtime
    body = fields.parse(SearchAudioInput, request.query_params)
    params = search_options(request, body)
    item_id = body.id
    vector, name = await queries.audio_vector(rt, optional_upload(fields.file), item_id)
    result = await queries.search(
        rt,
        params,
        vector=vector,
        exclude_file=item_id if body.exclude_self else None,
        query_id=(name if body.exclude_self else name + ":with-self") if item_id is not None else None,
    )
    return _answer(name, result)


@router.get("/v1/items/{item_id}/similar", response_model=SearchResponse, summary="Similar sounds")
@router.head("/v1/items/{item_id}/similar", include_in_schema=False)  # HEAD wherever GET works on items
async def similar(request: Request, item_id: int, params=SearchParams):
    rt: Runtime = request.app.state.runtime
    vector, name = await queries.audio_vector(rt, None, item_id)
    result = await queries.search(rt, params, vector=vector, exclude_file=item_id, query_id=name)
    return _answer(name, result)


@router.post(
    "/v1/search/texts",
    response_model=TextsResponse,
    summary="Describe audio with text",
    description="Audio -> text: the texts nearest to a clip, from AudioSet's label vocabulary "
    "and/or the `texts` you send.",
    openapi_extra=body_doc(TextsInput, file=True),
)
async def search_texts(request: Request, fields: Fields = BodyFields):
    rt: Runtime = request.app.state.runtime
    started = time.perf_counter()
    body = fields.parse(TextsInput, request.query_params)
    limit, texts = body.limit, body.texts
    if len(texts) > rt.settings.max_labels:  # counted as sent (the schema's maxItems)
        raise ProblemError("request.too_many_labels", f"{len(texts)} texts; the limit is {rt.settings.max_labels}")
    user = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    vector, name = await queries.audio_vector(rt, optional_upload(fields.file), body.id)
    candidates: list[tuple[str, str]] = []
    blocks = []
    if body.vocabulary:
        blocks.append(await queries.vocabulary_vectors(rt))
        candidates += [(label, "vocabulary") for label in rt.vocabulary.labels]
    if user:
        blocks.append(await queries.text_vectors(rt, user))
        candidates += [(t, "user") for t in user]
    items = []
    if blocks:
        scores = np.concatenate(blocks) @ vector
        order = np.argsort(-scores, kind="stable")[body.offset : body.offset + limit]
        items = [
            {"text": candidates[i][0], "score": round(float(scores[i]), 6), "source": candidates[i][1]} for i in order
        ]
    return {
        "query": name,
        "model": rt.manifest.name,
        "took_ms": round((time.perf_counter() - started) * 1000, 3),
        "items": items,
        "total": len(candidates),
        "limit": limit,
        "offset": body.offset,
    }
