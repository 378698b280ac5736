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
import os
import sys
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from indexer.logs import quiet_library_loggers
from service import problems
from service.metrics import Metrics, RequestMetricsMiddleware
from service.routes import classify, collections, duplicates, health, items, jobs, search
from service.routes.hot import add_hot_routes
from service.runtime import Runtime
from service.schemas import Problem
from service.security import Guard, redact_keys_in_access_log, require_access
from service.settings import ServiceSettings
from service.uploads import BodyLimitMiddleware

log = logging.getLogger("service")
STATIC = Path(str(resources.files("service").joinpath("static")))
DOCS_ASSETS = "/docs-assets"
# The docs pages may load only from this server: ReDoc's bundle would still fetch a decorative
# logo from its vendor's CDN, and neither page should talk to anything else. Inline scripts and
# styles are how Swagger UI starts and how ReDoc styles itself; ReDoc's search runs in a blob worker.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)

DESCRIPTION = """Search your audio library by text ("dog barking in the rain"), by example (a clip or an
indexed item) and tag clips zero-shot with the labels you choose, on CLAP embeddings.

Every POST takes its fields as a JSON object or as form fields (multipart when a `file` is
uploaded); lists are JSON arrays or repeated fields, never split on commas. Lists of resources
answer `{items, total, limit, offset}`; `tags` is always an object.
Errors are RFC 9457 problem details (`application/problem+json`) with a stable `code`.
When API keys are configured, send one as `X-API-Key` or `Authorization: Bearer` (never in the URL).
For `<audio>` elements, `POST /v1/media-session` sets a cookie that lets the browser fetch item audio."""


def docs_assets() -> Path | None:
    """Swagger UI's and ReDoc's files, as the fastapi-offline package ships them."""
    try:
        return Path(str(resources.files("fastapi_offline").joinpath("static")))
    except ModuleNotFoundError:
        return None


def _with_csp(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page


def add_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` on assets served by this process: they work offline,
    behind firewalls, and load nothing from elsewhere (no CDN, no fonts, no spec validator)."""
    assets = docs_assets()
    if assets is None:
        log.warning("no /docs or /redoc: the fastapi-offline package (their assets) is not installed")
        return
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    def prefix(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = prefix(request)
        return _with_csp(
            get_swagger_ui_html(
                openapi_url=root + str(app.openapi_url),
                title=f"{app.title} API",
                swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{root}/static/favicon.svg",
                oauth2_redirect_url=root + "/docs/oauth2-redirect",
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = prefix(request)
        return _with_csp(
            get_redoc_html(
                openapi_url=root + str(app.openapi_url),
                title=f"{app.title} API",
                redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{root}/static/favicon.svg",
                with_google_fonts=False,
            )
        )


def document_problems(app: FastAPI) -> None:
    """OpenAPI says what the handlers send: every error is a ``Problem`` (problem+json), not
    FastAPI's default 422 ``HTTPValidationError``, which this API never answers with."""
    generate = app.openapi

    def openapi() -> dict:
        spec = app.openapi_schema
        if spec is None:
            spec = generate()  # caches itself in app.openapi_schema; completed here, once
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for default in ("HTTPValidationError", "ValidationError"):
                schemas.pop(default, None)
            schemas["Problem"] = Problem.model_json_schema()
            answer = {
                "description": "an error: RFC 9457 problem details with a stable `code` (docs/errors.md)",
                "content": {problems.PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            }
            for operations in spec.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
                    operation.setdefault("responses", {})["default"] = answer
                    state_limits(operation, app.state.settings)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def state_limits(operation: dict, settings: ServiceSettings) -> None:
    """Write the configured limits the routes enforce into the operation's schemas, so a client
    (or Schemathesis) sees them: an offset past CLAPSEARCH_MAX_OFFSET is 422 request.offset, more
    labels or texts than CLAPSEARCH_MAX_LABELS is 422 request.too_many_labels."""
    limits = {"offset": ("maximum", settings.max_offset)}
    limits |= {name: ("maxItems", settings.max_labels) for name in ("candidate_labels", "texts")}
    for parameter in operation.get("parameters", []):
        rule = limits.get(parameter.get("name"))
        if rule and rule[0] not in parameter.get("schema", {}):
            parameter.setdefault("schema", {})[rule[0]] = rule[1]
    for media in operation.get("requestBody", {}).get("content", {}).values():
        for name, prop in media.get("schema", {}).get("properties", {}).items():
            rule = limits.get(name)
            if rule and rule[0] not in prop:
                prop[rule[0]] = rule[1]


M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas for this process (what MALLOC_ARENA_MAX does at start-up).

    glibc gives each thread that allocates concurrently its own arena, up to 8 per core, and an
    arena's freed pages stay with it: under 64 concurrent requests the API's RSS grew 19 % in
    steps and stayed there (bench/soak.py), with 2 arenas it stayed within 5 %. An explicit
    MALLOC_ARENA_MAX in the environment wins; 0 leaves glibc's default. True when applied."""
    if arenas <= 0 or "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl has no arenas to cap)
        return False


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    quiet_library_loggers()  # uvicorn's worker processes start here, not in `serve`
    settings = settings or ServiceSettings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Requests hand work to the inference thread and back: with Python's default 5 ms GIL
        # switch interval each hand-off can wait milliseconds for the other thread to yield.
        sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
        limit_malloc_arenas(settings.malloc_arenas)
        runtime = Runtime(settings, metrics)
        await run_in_threadpool(runtime.start)
        runtime.decode_slots = asyncio.Semaphore(settings.decode_threads)
        app.state.runtime = runtime
        log.info("serving model %s from %s", runtime.manifest.name, runtime.store.model_dir)
        try:
            yield
        finally:
            await run_in_threadpool(runtime.close)

    # docs_url/redoc_url off: FastAPI's pages load Swagger UI and ReDoc from a CDN, blank offline
    app = FastAPI(
        title="clapsearch", version="0.1.0", description=DESCRIPTION, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.settings = settings
    app.state.guard = Guard(
        settings.api_key_values(),
        settings.rate_limit_per_minute,
        settings.rate_limit_burst,
        failures_per_minute=settings.auth_failures_per_minute,
    )
    redact_keys_in_access_log()
    problems.install(app)
    document_problems(app)

    protected = [Depends(require_access)]
    for module in (search, classify, items, collections, duplicates, jobs):
        app.include_router(module.router, dependencies=protected)
    app.include_router(health.router)
    add_hot_routes(app)  # before the FastAPI search routes, which still answer every other form
    app.add_api_route(
        "/metrics",
        health.metrics,
        methods=["GET"],
        tags=["health"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        dependencies=[] if settings.metrics_public else protected,
    )

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    add_docs(app)

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Retry-After"],
        )
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app
