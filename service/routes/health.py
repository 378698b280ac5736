"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz():
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: model and published indexes loaded",
    responses={503: {"description": "not ready; the body says what is missing"}},
)
async def readyz(request: Request):
    runtime = request.app.state.runtime
    if runtime.checks is not None:
        await runtime.checks.settled()  # at most readiness_timeout_s, right after start only
    ready, detail = runtime.readiness()  # in-memory state only: never blocks the event loop
    return JSONResponse(detail, status_code=200 if ready else 503)


async def metrics(request: Request):
    m = request.app.state.runtime.metrics
    m.queue_depth.set(request.app.state.runtime.batcher.depth)
    return Response(m.render(), media_type=m.content_type)
