"""The FastAPI app: ``create_app(settings)`` builds it; uvicorn runs it.

    uvicorn --factory service.app:create_app          # settings from CLAPSEARCH_* variables
    clapsearch-api serve --port 8000                  # the same, with a CLI

Everything heavy (model, indexes, Redis, the job queue) starts in the lifespan, not at import,
and is reached by routes through ``app.state.runtime``. Tests build apps with their own
settings (``create_app(ServiceSettings(home=tmp, ...))``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from indexer.logs import quiet_library_loggers
from service import problems
from service.metrics import Metrics, RequestMetricsMiddleware
from service.routes import classify, collections, health, items, jobs, search
from service.runtime import Runtime
from service.security import Guard, require_access
from service.settings import ServiceSettings
from service.uploads import BodyLimitMiddleware

log = logging.getLogger("service")
STATIC = Path(str(resources.files("service").joinpath("static")))

DESCRIPTION = """Search your audio library by text ("dog barking in the rain"), by example (a clip or an
indexed item) and tag clips zero-shot with the labels you choose, on CLAP embeddings.

Errors are RFC 9457 problem details (`application/problem+json`) with a stable `code`.
When API keys are configured, send one as `X-API-Key` or `Authorization: Bearer`."""


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    quiet_library_loggers()      # uvicorn's worker processes start here, not in `serve`
    settings = settings or ServiceSettings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Requests hand work to the inference thread and back: with Python's default 5 ms GIL
        # switch interval each hand-off can wait milliseconds for the other thread to yield.
        sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
        runtime = Runtime(settings, metrics)
        await run_in_threadpool(runtime.start)
        runtime.decode_slots = asyncio.Semaphore(settings.decode_threads)
        app.state.runtime = runtime
        log.info("serving model %s from %s", runtime.manifest.name, runtime.store.model_dir)
        try:
            yield
        finally:
            await run_in_threadpool(runtime.close)

    app = FastAPI(title="clapsearch", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.guard = Guard(settings.api_key_values(), settings.rate_limit_per_minute, settings.rate_limit_burst)
    problems.install(app)

    protected = [Depends(require_access)]
    for module in (search, classify, items, collections, jobs):
        app.include_router(module.router, dependencies=protected)
    app.include_router(health.router)
    app.add_api_route("/metrics", health.metrics, methods=["GET"], tags=["health"],
                      summary="Prometheus metrics", dependencies=[] if settings.metrics_public else protected)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["Retry-After"])
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app
