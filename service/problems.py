"""Errors as RFC 9457 problem details (``application/problem+json``), mapped in one place.

Every error response has the same shape and a stable ``code`` clients can switch on:

    {"type": "/problems/audio.decode", "title": "Audio could not be decoded", "status": 422,
     "detail": "upload.wav: not a WAV file", "code": "audio.decode", "instance": "/v1/classify"}

The core raises its own exception tree (``indexer.errors``: audio.*, text, store.*, model.*);
the service adds :class:`ProblemError` for what only HTTP knows (auth, limits, uploads, jobs).
``PROBLEMS`` below is the one closed table of codes. A foreign exception the core knows the
meaning of (``indexer.errors.translate``: a database refusing connections, a full disk, ONNX
Runtime failing) answers with that meaning; anything else is a 500 ``service.internal`` problem
that names no internals, and is logged. Every code is dotted, ``family.name``: clients may switch on
the family (``audio``) or the code.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from indexer import errors as core

log = logging.getLogger("service")

PROBLEM_JSON = "application/problem+json"

# Every code an HTTP answer can carry: code -> (HTTP status, title). A core code (indexer.errors)
# without a row here answers with its family's row in FAMILIES ("audio.timeout" -> "audio"); the
# rest are what only HTTP knows. ProblemError refuses a code that is not here, so the set stays
# closed; docs/errors.md is generated from these tables and the core's classes. Every code is
# dotted (tests/indexer/test_errors.py).
PROBLEMS: dict[str, tuple[int, str]] = {
    # the core
    "audio.too_long": (413, "Audio is too long"),
    "audio.unsupported_format": (415, "Unsupported audio format"),
    "audio.decode": (422, "Audio could not be decoded"),
    "audio.empty": (422, "Audio is empty"),
    "audio.invalid_samples": (422, "Audio has invalid samples"),
    "text.too_long": (422, "Query too long"),
    "request.min_relevance": (422, "Relevance not available"),
    "item.not_found": (404, "No such item"),
    "item.not_indexed": (409, "Item has no vector"),
    "item.audio_unavailable": (404, "Audio file unavailable"),
    "store.collection_not_found": (404, "No such collection"),
    "store.busy": (409, "Collection is busy"),
    "store.index": (503, "Index unavailable"),
    "store.database": (503, "Database unavailable"),
    "store.io": (503, "Storage unavailable"),
    "model.mismatch": (409, "Index and model do not match"),
    "model.manifest": (503, "Model unavailable"),
    "model.runtime": (503, "Model failed"),
    # requests
    "request.invalid": (422, "Invalid request"),
    "request.method": (405, "Method not allowed"),
    "request.audio_source": (422, "Send one audio source"),
    "request.offset": (422, "Offset too deep"),
    "request.no_labels": (422, "No candidate labels"),
    "request.too_many_labels": (422, "Too many labels"),
    "request.label_too_long": (422, "Label too long"),
    "request.template": (422, "Invalid hypothesis template"),
    # the server stack's own answers (unknown route, unmapped statuses as http.<status>)
    "http.not_found": (404, "Not found"),
    # uploads
    "upload.too_large": (413, "Request too large"),
    "upload.content_type": (415, "Unsupported media type"),
    # access
    "auth.required": (401, "Authentication required"),
    "auth.invalid_key": (401, "Invalid API key"),
    "auth.forbidden": (403, "Forbidden"),
    "auth.rate_limited": (429, "Too many requests"),
    # the service itself
    "service.busy": (503, "Server busy"),
    "service.internal": (500, "Internal error"),
    # indexes and jobs
    "index.no_segments": (404, "Collection has no segments"),
    "index.not_published": (404, "No index yet"),
    "ingest.path_not_allowed": (403, "Ingest path not allowed"),
    "ingest.path_not_found": (404, "Ingest path not found"),
    "job.not_found": (404, "No such job"),
    "job.unavailable": (503, "Job queue unavailable"),
    # h-api (issue 15, one API style): an empty query had only the family code "text"
    "text.empty": (422, "Query is empty"),
    # issue 16 (hostile inputs): a core code whose family ("store", 503) would misstate it
    "store.collection_name": (422, "Invalid collection name"),
    "request.filters": (422, "Too many filter values"),
    # issue 17 (tempo and key filters): an unknown key name, bpm_min above bpm_max
    "request.filter_value": (422, "Invalid filter value"),
    # issue 16 (keys never in URLs; the server stack's own 400 and 416 as problems)
    "auth.key_in_url": (400, "API key in URL"),
    "request.range": (416, "Range not satisfiable"),
    "request.range_invalid": (400, "Malformed Range header"),
}
# The status and title of a core code that has no row in PROBLEMS, by its family (the part before
# the last dot): the branches of indexer.errors' tree. Families, not codes: no answer carries them.
FAMILIES: dict[str, tuple[int, str]] = {
    "audio": (422, "Audio could not be used"),
    "file": (422, "File could not be read"),
    "data": (422, "Training data could not be used"),
    "config": (422, "Invalid configuration"),
    "evaluation": (422, "Evaluation could not run"),
    "text": (422, "Text could not be used"),
    "request": (422, "Invalid request"),
    "item": (422, "Item cannot be used"),
    "store": (503, "Store unavailable"),
    "model": (503, "Model unavailable"),
}
_BY_FAMILY = {**FAMILIES, **PROBLEMS}
# Starlette's own HTTP errors (unknown route, wrong method...) -> our code.
HTTP_CODES = {
    400: "request.invalid",
    401: "auth.required",
    403: "auth.forbidden",
    404: "http.not_found",
    405: "request.method",
    413: "upload.too_large",
    415: "upload.content_type",
    429: "auth.rate_limited",
}


class ProblemError(Exception):
    """An error the service answers with a ``code`` of ``PROBLEMS`` (which gives its status and title)."""

    def __init__(
        self, code: str, detail: str | None = None, *, headers: dict[str, str] | None = None, extra: dict | None = None
    ):
        status, title = PROBLEMS[code]  # KeyError: a code outside the closed set is a bug
        super().__init__(detail or title)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict | None = None,
) -> JSONResponse:
    body = {"type": f"/problems/{code}", "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def core_status(code: str) -> tuple[int, str]:
    """HTTP status and title of a core error code (its own row, else its family's)."""
    return core.by_family(code, _BY_FAMILY, PROBLEMS["service.internal"])


def _core_detail(exc: core.ClapSearchError) -> str:
    """Audio errors name the server's temporary upload file; say the reason only. No detail names
    a server path or a library's source location (``core.public_text``); the log keeps them."""
    return core.public_text(exc.reason if isinstance(exc, core.AudioError) else str(exc))


def _core_problem(request: Request, exc: core.ClapSearchError) -> JSONResponse:
    status, title = core_status(exc.code)
    headers = None
    if status >= 500:
        log.warning("%s on %s: %s", exc.code, request.url.path, exc)
        headers = {"Retry-After": "5"}  # a database, disk or model that failed may come back
    return problem_response(status, exc.code, title, _core_detail(exc), instance=request.url.path, headers=headers)


def _internal(request: Request) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path)
    return problem_response(
        500,
        "service.internal",
        "Internal error",
        "the server failed on this request; it is logged",
        instance=request.url.path,
    )


async def _foreign(request: Request, exc: Exception) -> JSONResponse:
    """OS, SQLAlchemy and runtime errors: answered with their meaning where the core knows it
    (``indexer.errors.translate``). Registered per class, so the answer does not pass through
    Starlette's last-resort handler, which re-raises and drops the keep-alive connection."""
    known = core.translate(exc)
    return _core_problem(request, known) if known is not None else _internal(request)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (RFC 9110: a 405 names them in Allow).
    Starlette names only the first route that matched the path, and a path served by a GET
    route and a separate HEAD route said ``Allow: HEAD`` alone. Each method is tried against
    every route's ``matches`` (FastAPI wraps included routers; their routes are not listed)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
    return ", ".join(allowed)


def install(app: FastAPI) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError):
        return problem_response(
            exc.status, exc.code, exc.title, exc.detail, instance=request.url.path, headers=exc.headers, extra=exc.extra
        )

    @app.exception_handler(core.ClapSearchError)
    async def _core(request: Request, exc: core.ClapSearchError):
        return _core_problem(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        return problem_response(
            422, "request.invalid", "Invalid request", detail, instance=request.url.path, extra={"errors": errors}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = HTTP_CODES.get(exc.status_code)
        title = PROBLEMS[code][1] if code else "Error"
        code = code or f"http.{exc.status_code}"
        detail = exc.detail if isinstance(exc.detail, str) else None
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return problem_response(exc.status_code, code, title, detail, instance=request.url.path, headers=headers)

    # Exception last: ONNX Runtime's errors derive from it directly.
    for kind in (OSError, RuntimeError, SQLAlchemyError, Exception):
        app.add_exception_handler(kind, _foreign)
