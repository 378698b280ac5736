"""Collections: what is indexed, by which model, and which index version is live."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from indexer import exports
from indexer.store import catalog
from indexer.store.status import collection_status
from service.routes.exported import exported
from service.schemas import CollectionInfo, CollectionList

if TYPE_CHECKING:
    from service.runtime import Runtime

router = APIRouter(tags=["collections"])


def _info(rt: Runtime, name: str) -> dict:
    status = collection_status(rt.store, name)
    index = {}
    for kind in ("files", "segments"):
        live = status["indexes"].get(kind)
        index[kind] = (
            None
            if live is None
            else {
                "version": int(live["version"].lstrip("v")),
                "n_vectors": live["vectors"],
                "up_to_date": live["up_to_date"],
                "plan": live["plan"].get("factory"),
            }
        )
    return {
        "name": name,
        "model": status["model"],
        "model_fingerprint": status["fingerprint"],
        "served": status["fingerprint"] == rt.manifest.fingerprint,
        "dim": status["dim"],
        "files": status["files"].get("indexed", 0),
        "failed": status["files"].get("failed", 0),
        "hours": status["audio_hours"],
        "segments": status["segment_seconds"] is not None,
        "index": index,
    }


def _all(rt: Runtime, limit: int, offset: int) -> dict:
    names = [c.name for c in catalog.list_collections(rt.store.db) if "~" not in c.name]
    page = names[offset : offset + limit]
    return {"items": [_info(rt, name) for name in page], "total": len(names), "limit": limit, "offset": offset}


@router.get("/v1/collections", response_model=CollectionList, summary="List collections")
async def list_collections(
    request: Request, limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=1_000_000)
):
    return await run_in_threadpool(_all, request.app.state.runtime, limit, offset)


@router.get(
    "/v1/collections/{name}/export",
    summary="A collection's files as a playlist or a sheet",
    response_class=StreamingResponse,
    responses={200: {"content": {media: {} for media in exports.MEDIA_TYPES.values()}}},
)
async def export_collection(request: Request, name: str, format: Literal["m3u8", "csv"] = Query("m3u8")):
    rt = request.app.state.runtime
    collection = await run_in_threadpool(rt.store.collection, name)
    records = exports.collection_records(rt.store.db, collection.id)  # streamed page by page
    return exported(request, records, format, name)


@router.get("/v1/collections/{name}", response_model=CollectionInfo, summary="One collection")
async def get_collection(request: Request, name: str):
    return await run_in_threadpool(_info, request.app.state.runtime, name)
