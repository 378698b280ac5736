"""Collections: what is indexed, by which model, and which index version is live."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from indexer.store import catalog
from indexer.store.status import collection_status
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


@router.get("/v1/collections/{name}", response_model=CollectionInfo, summary="One collection")
async def get_collection(request: Request, name: str):
    return await run_in_threadpool(_info, request.app.state.runtime, name)
