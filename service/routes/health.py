"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.problems import ProblemError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz():
    return {"status": "ok"}


def _may_see_details(request: Request) -> bool:
    """Readiness details (paths, index errors, queue state) are for operators: with API keys
    configured only a caller presenting a valid one in a header sees them. Probes (load
    balancers, kubelets) need no key: the status code and ``ready`` say all they act on."""
    if not request.app.state.settings.api_keys:
        return True  # an open API: nothing here is more private than the API itself
    if not (request.headers.get("x-api-key") or request.headers.get("authorization")):
        return False  # keys in URLs never grant details: they end up in access logs
    try:
        request.app.state.guard(request)
    except ProblemError:
        return False
    return True


@router.get(
    "/readyz",
    summary="Readiness: model and published indexes loaded, database reachable",
    description="Always answers `ready`; with API keys configured the details (dependencies, "
    "indexes, reasons) only to a caller sending a valid key as X-API-Key or Authorization: Bearer.",
    responses={503: {"description": "not ready; the body says what is missing"}},
)
async def readyz(request: Request):
    runtime = request.app.state.runtime
    if runtime.checks is not None:
        await runtime.checks.settled()  # at most readiness_timeout_s, right after start only
    ready, detail = runtime.readiness()  # in-memory state only: never blocks the event loop
    body = detail if _may_see_details(request) else {"ready": ready}
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request):
    m = request.app.state.runtime.metrics
    m.queue_depth.set(request.app.state.runtime.batcher.depth)
    return Response(m.render(), media_type=m.content_type)
