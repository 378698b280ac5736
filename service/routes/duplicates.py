"""Near-duplicates: groups of files of a collection that are the same recording in another
encoding, sample rate, gain, trim or length (``indexer.duplicates``; ``indexer duplicates``)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from indexer.duplicates import DEFAULT_THRESHOLD, find_duplicates, report_dict
from service.schemas import DuplicateList

router = APIRouter(tags=["collections"])


@router.get(
    "/v1/duplicates",
    response_model=DuplicateList,
    summary="Near-duplicate groups",
    description="Files whose vectors have a cosine similarity at or above `threshold`, grouped (a group is "
    "connected by such pairs), largest groups first, each with its pairs and the reason. The pairs are "
    "cached per collection: a repeated call is instant, and after an ingest only the new files are searched.",
)
async def duplicates(
    request: Request,
    collection: str = Query("default", min_length=1, max_length=200),
    threshold: float = Query(DEFAULT_THRESHOLD, gt=0, le=1, description="cosine similarity in (0, 1]"),
    min_group: int = Query(2, ge=2, le=1000, description="smallest group to list"),
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=1_000_000),
):
    store = request.app.state.runtime.store

    def run() -> dict:
        report = find_duplicates(store, collection, threshold=threshold, min_group=min_group)
        return report_dict(report, limit=limit, offset=offset)

    return await run_in_threadpool(run)
