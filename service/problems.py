"""Errors as RFC 9457 problem details (``application/problem+json``), mapped in one place.

Every error response has the same shape and a stable ``code`` clients can switch on:

    {"type": "/problems/audio.decode", "title": "Audio could not be decoded", "status": 422,
     "detail": "upload.wav: not a WAV file", "code": "audio.decode", "instance": "/v1/classify"}

The core raises its own exception tree (``indexer.errors``: audio.*, text, store.*, model.*);
the service adds :class:`ProblemError` for what only HTTP knows (auth, limits, uploads, jobs).
Unexpected exceptions become a 500 ``internal`` problem that names no internals; they are logged.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexer import errors as core

log = logging.getLogger("service")

PROBLEM_JSON = "application/problem+json"

# core error code -> (HTTP status, title). Looked up by the most specific code first.
_CORE = {
    "audio.too_long": (413, "Audio is too long"),
    "audio.unsupported_format": (415, "Unsupported audio format"),
    "audio.decode": (422, "Audio could not be decoded"),
    "audio.empty": (422, "Audio is empty"),
    "audio.invalid_samples": (422, "Audio has invalid samples"),
    "audio": (422, "Audio could not be used"),
    "text.too_long": (422, "Query too long"),
    "text": (422, "Text could not be used"),
    "request.min_relevance": (422, "Relevance not available"),
    "request": (422, "Invalid request"),
    "item.not_found": (404, "No such item"),
    "item.not_indexed": (409, "Item has no vector"),
    "item.audio_unavailable": (404, "Audio file unavailable"),
    "item": (422, "Item cannot be used"),
    "store.collection_not_found": (404, "No such collection"),
    "store.busy": (409, "Collection is busy"),
    "store.index": (503, "Index unavailable"),
    "store": (503, "Store unavailable"),
    "model.mismatch": (409, "Index and model do not match"),
    "model.manifest": (503, "Model unavailable"),
    "model": (503, "Model unavailable"),
}
_HTTP_CODES = {
    400: ("request.invalid", "Bad request"), 401: ("auth.required", "Authentication required"),
    403: ("auth.forbidden", "Forbidden"), 404: ("not_found", "Not found"),
    405: ("request.method", "Method not allowed"), 413: ("upload.too_large", "Request too large"),
    415: ("upload.content_type", "Unsupported media type"), 429: ("rate_limited", "Too many requests"),
}


class ProblemError(Exception):
    """An error the service answers with ``status`` and a stable ``code``."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None, *,
                 headers: dict[str, str] | None = None, extra: dict | None = None):
        super().__init__(detail or title)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(status: int, code: str, title: str, detail: str | None = None, *,
                     instance: str | None = None, headers: dict[str, str] | None = None,
                     extra: dict | None = None) -> JSONResponse:
    body = {"type": f"/problems/{code}", "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def core_status(exc: core.ClapSearchError) -> tuple[int, str]:
    code = exc.code
    while code:
        if code in _CORE:
            return _CORE[code]
        code = code.rpartition(".")[0]
    return 500, "Internal error"


def _core_detail(exc: core.ClapSearchError) -> str:
    """Audio errors name the server's temporary upload file; say the reason only."""
    if isinstance(exc, core.AudioError):
        return exc.reason
    return str(exc)


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError):
        return problem_response(exc.status, exc.code, exc.title, exc.detail,
                                instance=request.url.path, headers=exc.headers, extra=exc.extra)

    @app.exception_handler(core.ClapSearchError)
    async def _core(request: Request, exc: core.ClapSearchError):
        status, title = core_status(exc)
        if status >= 500:
            log.warning("%s on %s: %s", exc.code, request.url.path, exc)
        return problem_response(status, exc.code, title, _core_detail(exc), instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        return problem_response(422, "request.invalid", "Invalid request", detail,
                                instance=request.url.path, extra={"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code, title = _HTTP_CODES.get(exc.status_code, (f"http.{exc.status_code}", "Error"))
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(exc.status_code, code, title, detail, instance=request.url.path,
                                headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return problem_response(500, "internal", "Internal error",
                                "the server failed on this request; it is logged", instance=request.url.path)
