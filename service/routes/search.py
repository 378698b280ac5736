"""Search: text -> audio, audio -> audio (upload or item id), audio -> text."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import numpy as np
from fastapi import APIRouter, Query, Request, UploadFile
from fastapi.responses import Response

from indexer.query import check_query_text
from service import queries
from service.problems import ProblemError
from service.routes.params import AudioUpload, ItemId, SearchParams, optional_upload
from service.schemas import SearchResponse, TextsResponse

if TYPE_CHECKING:
    from service.runtime import Runtime

router = APIRouter(tags=["search"])


def _fast_json(body: dict) -> Response:
    """The search answer, serialised once by ``json`` (already plain types): FastAPI's response
    model validation + jsonable_encoder would cost about as much as a FAISS search here. The
    response models still document the shape in OpenAPI, and tests check bodies against them."""
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

_TEXT_DOC = ("Text -> audio: the files (or, with `segments=true`, the moments inside long files) "
             "whose sound best matches `q`. Filters apply inside the search, so a page is full "
             "even when few files match.")


@router.get("/v1/search", response_model=SearchResponse, summary="Search audio by text", description=_TEXT_DOC)
@router.post("/v1/search", response_model=SearchResponse, include_in_schema=False)
@router.get("/search", response_model=SearchResponse, include_in_schema=False)
@router.post("/search", response_model=SearchResponse, summary="Search audio by text (unversioned alias)",
             description=_TEXT_DOC)
async def search_text(request: Request, q: str = Query(..., description="what it should sound like",
                                                       examples=["dog barking in the rain"]),
                      params=SearchParams):
    rt: Runtime = request.app.state.runtime
    text = check_query_text(q)
    result = await queries.search(rt, params, text=text, query_id="t:" + text)
    return _fast_json({"query": text, **result})


@router.post("/v1/search/audio", response_model=SearchResponse, summary="Search audio by example",
             description="Audio -> audio: upload a clip as multipart `file`, or name an indexed item "
                         "with `id`; returns the most similar sounds (the item itself excluded).")
async def search_audio(request: Request, params=SearchParams, file: UploadFile | None = AudioUpload,
                       item_id: int | None = ItemId,
                       exclude_self: bool = Query(True, description="leave the query item out")):
    rt: Runtime = request.app.state.runtime
    vector, name = await queries.audio_vector(rt, optional_upload(file), item_id)
    result = await queries.search(rt, params, vector=vector,
                                  exclude_file=item_id if exclude_self else None,
                                  query_id=(name if exclude_self else name + ":with-self")
                                  if item_id is not None else None)
    return _fast_json({"query": name, **result})


@router.get("/v1/items/{item_id}/similar", response_model=SearchResponse, summary="Similar sounds")
async def similar(request: Request, item_id: int, params=SearchParams):
    rt: Runtime = request.app.state.runtime
    vector, name = await queries.audio_vector(rt, None, item_id)
    result = await queries.search(rt, params, vector=vector, exclude_file=item_id, query_id=name)
    return _fast_json({"query": name, **result})


@router.post("/v1/search/texts", response_model=TextsResponse, summary="Describe audio with text",
             description="Audio -> text: the texts nearest to a clip, from AudioSet's label vocabulary "
                         "and/or the `texts` you send.")
async def search_texts(request: Request, file: UploadFile | None = AudioUpload, item_id: int | None = ItemId,
                       limit: int = Query(10, ge=1, le=1000),
                       texts: list[str] = Query([], description="your own candidate texts (repeatable)"),
                       vocabulary: bool = Query(True, description="include AudioSet's labels")):
    rt: Runtime = request.app.state.runtime
    started = time.perf_counter()
    user = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if len(user) > rt.settings.max_labels:
        raise ProblemError("request.too_many_labels", f"{len(user)} texts; the limit is {rt.settings.max_labels}")
    vector, name = await queries.audio_vector(rt, optional_upload(file), item_id)
    candidates: list[tuple[str, str]] = []
    blocks = []
    if vocabulary:
        blocks.append(await queries.vocabulary_vectors(rt))
        candidates += [(label, "vocabulary") for label in rt.vocabulary.labels]
    if user:
        blocks.append(await queries.text_vectors(rt, user))
        candidates += [(t, "user") for t in user]
    if not blocks:
        results = []
    else:
        scores = np.concatenate(blocks) @ vector
        order = np.argsort(-scores, kind="stable")[:limit]
        results = [{"text": candidates[i][0], "score": round(float(scores[i]), 6), "source": candidates[i][1]}
                   for i in order]
    return {"query": name, "model": rt.manifest.name,
            "took_ms": round((time.perf_counter() - started) * 1000, 3), "results": results}
