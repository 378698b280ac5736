"""Uploaded audio: size limits enforced while the body streams in, then checks before decoding.

1. :class:`BodyLimitMiddleware` refuses a body larger than ``max_upload_bytes`` with 413: at
   once when ``Content-Length`` says so, otherwise as soon as the streamed bytes cross the
   limit (chunked uploads), without reading the rest or handing anything to the decoder.
2. :func:`stored_upload` checks the part's content type (audio/*, or octet-stream when the
   browser does not know), copies it to a temporary file with its extension (libsndfile and our
   error messages use it), and reads the header: a clip longer than ``max_upload_seconds`` is
   refused (413 ``audio.too_long``) before a single sample is decoded, and so is one whose
   decoding would cost more samples (frames x channels) than ``max_upload_seconds`` at
   ``upload_sample_rate_cap``: duration alone does not bound the CPU (a silent 10-minute,
   8-channel, 655 kHz FLAC is 3.5 MB and took 22 s to decode).
3. :class:`UploadGate` admits uploads to the ``decode_threads``: at most ``upload_queue`` wait,
   each at most ``upload_wait_s``, and a decode past ``upload_decode_timeout_s`` stops being
   waited for; each of these answers 503 ``service.busy`` with Retry-After instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import tempfile
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from indexer.audio.decode import DecodeLimits, probe
from service.problems import ProblemError, problem_response

if TYPE_CHECKING:
    from service.runtime import Runtime

# Browsers label audio inconsistently (audio/x-wav, audio/wave, video/ogg for .ogg, octet-stream
# for .opus or .flac on some systems); video/* (mp4, webm, mkv) is searched by its audio track;
# anything else (text/plain, image/png...) is not audio.
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
    if not (ctype.startswith(("audio/", "video/")) or ctype in _AUDIO_TYPES):
        raise ProblemError(
            "upload.content_type",
            f"the uploaded part is {ctype!r}; send audio (audio/*, a video's audio track as video/*, "
            "or application/octet-stream)",
        )


def _suffix(filename: str | None) -> str:
    ext = Path(filename or "").suffix.lower()
    return ext if _SAFE_EXT.match(ext) else ""


def upload_limits(settings) -> DecodeLimits:
    """What an upload may cost: its duration, and its decoded samples (frames x channels)."""
    seconds = settings.max_upload_seconds
    return DecodeLimits(max_duration_s=seconds, max_samples=int(seconds * settings.upload_sample_rate_cap))


@asynccontextmanager
async def stored_upload(upload: UploadFile, *, limits: DecodeLimits, copy_chunk: int = 1 << 20) -> AsyncIterator[Path]:
    """The upload as a temporary file whose header passed ``limits``; removed afterwards."""
    check_content_type(upload)
    fd, name = tempfile.mkstemp(prefix="clapsearch-upload-", suffix=_suffix(upload.filename))
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(copy_chunk):
                out.write(chunk)
        if path.stat().st_size == 0:
            raise ProblemError("audio.empty", "the uploaded file has no bytes")
        # header only: a 3-hour file, or a 655 kHz 8-channel one, is refused here, before the decoder sees it
        probe(path, limits=limits)
        yield path
    finally:
        path.unlink(missing_ok=True)


class UploadGate:
    """Admission of uploads to the decode threads (``slots``), so load sheds instead of queueing.

    At most ``queue`` uploads wait beyond those decoding; a wait longer than ``wait_s`` or a
    decode longer than ``decode_s`` answers 503 ``service.busy``. A decode thread cannot be stopped, so
    one past its deadline keeps its slot until it returns: the deadline frees the client, the
    slot keeps the CPU bounded.
    """

    def __init__(self, slots: asyncio.Semaphore, *, capacity: int, queue: int, wait_s: float, decode_s: float):
        self.slots, self.limit = slots, capacity + queue
        self.wait_s, self.decode_s = wait_s, decode_s
        self.inside = 0

    def _busy(self, detail: str, retry_s: float) -> ProblemError:
        return ProblemError("service.busy", detail, headers={"Retry-After": str(max(1, round(retry_s)))})

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        if self.inside >= self.limit:
            raise self._busy(f"{self.inside} uploads are already being decoded or waiting", 2)
        self.inside += 1
        try:
            yield
        finally:
            self.inside -= 1

    async def run(self, fn: Callable[[Path], Any], path: Path) -> Any:
        try:
            await asyncio.wait_for(self.slots.acquire(), self.wait_s)
        except TimeoutError:
            raise self._busy(f"no decode thread became free within {self.wait_s:g} s", self.wait_s) from None
        task = asyncio.ensure_future(run_in_threadpool(fn, path))
        task.add_done_callback(lambda _: self.slots.release())
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.decode_s)
        except TimeoutError:
            task.add_done_callback(lambda done: done.cancelled() or done.exception())  # nobody awaits it now
            raise self._busy(f"decoding the upload took longer than {self.decode_s:g} s", self.decode_s) from None


# One gate per runtime, made on first use on the event loop (like the semaphore it wraps).
_GATES: weakref.WeakKeyDictionary[Runtime, UploadGate] = weakref.WeakKeyDictionary()


def upload_gate(rt: Runtime) -> UploadGate:
    gate = _GATES.get(rt)
    if gate is None:
        s = rt.settings
        gate = _GATES[rt] = UploadGate(
            rt.decode_slots,
            capacity=s.decode_threads,
            queue=s.upload_queue,
            wait_s=s.upload_wait_s,
            decode_s=s.upload_decode_timeout_s,
        )
    return gate


async def decode_upload(rt: Runtime, upload: UploadFile, decode: Callable[..., Any]) -> Any:
    """``decode(path, limits=...)`` of the uploaded file, admitted by the runtime's gate."""
    gate, limits = upload_gate(rt), upload_limits(rt.settings)
    async with gate.admitted(), stored_upload(upload, limits=limits) as path:
        return await gate.run(functools.partial(decode, limits=limits), path)
