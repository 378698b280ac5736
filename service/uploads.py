"""Uploaded audio: size limits enforced while the body streams in, then checks before decoding.

1. :class:`BodyLimitMiddleware` refuses a body larger than ``max_upload_bytes`` with 413: at
   once when ``Content-Length`` says so, otherwise as soon as the streamed bytes cross the
   limit (chunked uploads), without reading the rest or handing anything to the decoder.
2. :func:`stored_upload` checks the part's content type (audio/*, or octet-stream when the
   browser does not know), copies it to a temporary file with its extension (libsndfile and our
   error messages use it), and reads the header: a clip longer than ``max_upload_seconds`` is
   refused (413 ``audio.too_long``) before a single sample is decoded.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import UploadFile
from starlette.exceptions import HTTPException

from indexer.audio.decode import DecodeLimits, probe
from service.problems import ProblemError, problem_response

# Browsers label audio inconsistently (audio/x-wav, audio/wave, video/ogg for .ogg, octet-stream
# for .opus or .flac on some systems); anything else (text/plain, image/png...) is not audio.
_AUDIO_TYPES = {"application/octet-stream", "application/ogg", "video/ogg", "application/x-flac"}
_SAFE_EXT = re.compile(r"^\.[a-z0-9]{1,8}$")


class _TooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body crosses the limit (answered as 413)."""


class BodyLimitMiddleware:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _refuse(self, scope, detail: str):
        return problem_response(
            413,
            "upload.too_large",
            "Request too large",
            detail,
            instance=scope.get("path"),
            headers={"Connection": "close"},
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    return await self._refuse(
                        scope, f"the body is {declared} bytes; the limit is {limit} (CLAPSEARCH_MAX_UPLOAD_BYTES)"
                    )(scope, receive, send)
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # an HTTPException, not a private error: FastAPI's form parser turns anything
                    # else raised while it reads the body into a 400 "error parsing the body"
                    raise _TooLarge(413, f"the body passed the limit of {limit} bytes (CLAPSEARCH_MAX_UPLOAD_BYTES)")
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(scope, f"the body passed the limit of {limit} bytes (CLAPSEARCH_MAX_UPLOAD_BYTES)")(
                    scope, receive, send
                )


def check_content_type(upload: UploadFile) -> None:
    ctype = (upload.content_type or "application/octet-stream").split(";")[0].strip().lower()
    if not (ctype.startswith("audio/") or ctype in _AUDIO_TYPES):
        raise ProblemError(
            "upload.content_type", f"the uploaded part is {ctype!r}; send audio (audio/*, or application/octet-stream)"
        )


def _suffix(filename: str | None) -> str:
    ext = Path(filename or "").suffix.lower()
    return ext if _SAFE_EXT.match(ext) else ""


@asynccontextmanager
async def stored_upload(upload: UploadFile, *, max_seconds: float, copy_chunk: int = 1 << 20) -> AsyncIterator[Path]:
    """The upload as a temporary file whose header passed the duration limit; removed afterwards."""
    check_content_type(upload)
    fd, name = tempfile.mkstemp(prefix="clapsearch-upload-", suffix=_suffix(upload.filename))
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(copy_chunk):
                out.write(chunk)
        if path.stat().st_size == 0:
            raise ProblemError("audio.empty", "the uploaded file has no bytes")
        # header only: a 3-hour file is refused here, before the decoder sees it
        probe(path, limits=DecodeLimits(max_duration_s=max_seconds))
        yield path
    finally:
        path.unlink(missing_ok=True)
