"""Indexed items: metadata, the audio file itself (with HTTP Range, so browsers can seek) and
waveform peaks for thumbnails. Only files the database lists as indexed are ever served, and
each request re-checks the file on disk (``indexer.query.open_item_audio``: no symlink swapped
in, nothing outside the allowed roots) and serves the very file it checked."""

from __future__ import annotations

import json
import mimetypes
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from indexer.audio.decode import open_blocks
from indexer.errors import AudioError, public_text
from indexer.query import ItemAudio, item_row, open_item_audio
from indexer.store.analyses import analyses_of
from service.problems import PROBLEMS, ProblemError, problem_response
from service.schemas import Item, Peaks
from service.security import MEDIA_COOKIE, MEDIA_PATH, MEDIA_TTL_S

if TYPE_CHECKING:
    from service.runtime import Runtime

router = APIRouter(tags=["items"])

_MEDIA = {
    "WAV": "audio/wav",
    "FLAC": "audio/flac",
    "OGG": "audio/ogg",
    "MP3": "audio/mpeg",
    "AIFF": "audio/aiff",
    "AU": "audio/basic",
    "CAF": "audio/x-caf",
    "W64": "audio/x-w64",
    "RF64": "audio/wav",
    # decoded by PyAV (AudioInfo.format is named after the extension)
    "M4A": "audio/mp4",
    "M4B": "audio/mp4",
    "MP4": "video/mp4",
    "M4V": "video/mp4",
    "MOV": "video/quicktime",
    "AAC": "audio/aac",
    "WMA": "audio/x-ms-wma",
    "ASF": "video/x-ms-asf",
    "MKA": "audio/x-matroska",
    "MKV": "video/x-matroska",
    "WEBM": "video/webm",
}
PEAK_BLOCK_FRAMES = 1 << 16


def utc_iso(moment: datetime | None) -> str | None:
    """ISO 8601 with its offset (``+00:00``): SQLite hands back naive datetimes, stored as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


# HEAD works wherever GET does (a client may check a file's size or type before fetching it):
# each GET route below is also registered for HEAD, outside the schema; the server sends no body.
@router.get("/v1/items/{item_id}", response_model=Item, summary="Item metadata")
@router.head("/v1/items/{item_id}", include_in_schema=False)
async def item(request: Request, item_id: int):
    rt: Runtime = request.app.state.runtime
    row, collection = await run_in_threadpool(item_row, rt.store, item_id)
    analysis = (await run_in_threadpool(analyses_of, rt.store.db, [row.id])).get(row.id)
    body = Item.model_validate(
        {
            "id": row.id,
            "collection": collection.name,
            "path": row.path,
            "name": Path(row.path).name,
            "size": row.size,
            "duration_s": row.duration_s,
            "format": row.format,
            "subtype": row.subtype,
            "sample_rate": row.sample_rate,
            "channels": row.channels,
            "tags": row.tags or None,
            "status": row.status,
            "error_code": row.error_code,
            "n_segments": row.n_segments,
            "updated_at": row.updated_at,
            "analysis": analysis,
            "audio_url": f"/v1/items/{row.id}/audio",
            "peaks_url": f"/v1/items/{row.id}/peaks",
        }
    ).model_dump(mode="json")
    # the model writes a UTC time as "...Z"; the API's timestamps say "+00:00", the ISO 8601 offset
    body["updated_at"] = utc_iso(row.updated_at)
    return JSONResponse(body)


@router.post(
    "/v1/media-session",
    status_code=204,
    response_class=Response,
    summary="Cookie for media elements",
    description="Media the browser fetches by itself (`<audio src>`) cannot send an API key header, and keys never "
    "go in URLs: called with a key, this sets an HttpOnly, SameSite=Strict cookie that authorises GET and HEAD "
    f"under `{MEDIA_PATH}` for {MEDIA_TTL_S // 3600} hours. Without configured keys it sets nothing.",
)
async def media_session(request: Request):
    guard = request.app.state.guard
    response = Response(status_code=204)
    if guard.keys:
        response.set_cookie(
            MEDIA_COOKIE,
            guard.media.issue(),
            max_age=MEDIA_TTL_S,
            path=MEDIA_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


class _OpenedFileResponse(FileResponse):
    """A FileResponse that closes the checked file descriptor however the response ends
    (a background task would not run when the client goes away mid-stream)."""

    def __init__(self, opened: ItemAudio, **kwargs):
        super().__init__(opened.path, **kwargs)
        self.opened = opened

    async def __call__(self, scope, receive, send) -> None:
        # Starlette answers a Range it cannot serve with its own bare text/plain 400 or 416: those
        # are held back and answered as problems, like every other error of the API.
        refused: dict = {}

        async def guarded(message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (400, 416):
                refused["status"] = message["status"]
            elif not refused:
                await send(message)

        try:
            await super().__call__(scope, receive, guarded)
        finally:
            self.opened.close()
        if refused:
            await self._range_problem(refused["status"], scope)(scope, receive, send)

    def _range_problem(self, status: int, scope) -> Response:
        size = self.opened.size
        if status == 416:
            code, detail = "request.range", f"the range starts beyond the file's {size} bytes"
            headers = {"Content-Range": f"bytes */{size}"}
        else:
            code, detail, headers = "request.range_invalid", "send Range: bytes=START-END (START < END)", {}
        return problem_response(status, code, PROBLEMS[code][1], detail, instance=scope.get("path"), headers=headers)


async def _open(rt: Runtime, item_id: int):
    row, _ = await run_in_threadpool(item_row, rt.store, item_id)
    return row, await run_in_threadpool(open_item_audio, row, rt.settings.allowed_ingest_roots)


@router.get(
    "/v1/items/{item_id}/audio",
    summary="Stream the audio file",
    response_class=FileResponse,
    responses={206: {"description": "a byte range"}},
)
@router.head("/v1/items/{item_id}/audio", include_in_schema=False)
async def audio(request: Request, item_id: int):
    rt: Runtime = request.app.state.runtime
    row, opened = await _open(rt, item_id)
    try:
        media = (
            _MEDIA.get((row.format or "").upper()) or mimetypes.guess_type(opened.name)[0] or "application/octet-stream"
        )
        return _OpenedFileResponse(
            opened,
            media_type=media,
            filename=opened.name,
            content_disposition_type="inline",
            headers={"Cache-Control": "private, max-age=3600"},
        )
    except BaseException:
        opened.close()
        raise


def compute_peaks(path: Path, n: int) -> dict:
    """min/max of the channel mean in ``n`` equal buckets, reading blocks (bounded memory), from
    whichever decoder reads the file (soundfile, or PyAV for m4a, wma, webm...)."""
    lows, highs = np.full(n, np.inf, np.float32), np.full(n, -np.inf, np.float32)
    try:
        with open_blocks(path, PEAK_BLOCK_FRAMES) as (info, blocks):
            frames, rate = info.frames, info.sample_rate
            position = 0
            try:
                for block in blocks:
                    mono = block.mean(axis=1)
                    mono[~np.isfinite(mono)] = 0.0  # NaN/Inf samples (float files) draw as silence
                    bucket = ((position + np.arange(len(mono))) * n // max(frames, 1)).clip(0, n - 1)
                    np.minimum.at(lows, bucket, mono)
                    np.maximum.at(highs, bucket, mono)
                    position += len(mono)
            except AudioError:
                pass  # a truncated tail: draw what decoded
    except AudioError as exc:
        raise ProblemError("audio.decode", public_text(exc.reason)) from None
    # buckets no sample fell in draw as silence too: JSON has no Inf/NaN (they became null)
    empty = ~(np.isfinite(lows) & np.isfinite(highs))
    lows[empty], highs[empty] = 0.0, 0.0
    return {
        "n": n,
        "duration_s": round(frames / rate, 3) if rate else 0.0,
        "min": [round(float(v), 4) for v in lows],
        "max": [round(float(v), 4) for v in highs],
    }


@router.get("/v1/items/{item_id}/peaks", response_model=Peaks, summary="Waveform thumbnail data")
@router.head("/v1/items/{item_id}/peaks", include_in_schema=False)
async def peaks(request: Request, item_id: int, n: int = Query(200, ge=8, le=2000)):
    rt: Runtime = request.app.state.runtime
    row, opened = await _open(rt, item_id)  # checked before the cache: a refused file shows nothing
    try:
        key = f"peaks:{row.id}:{row.mtime_ns}:{n}"
        cached = await run_in_threadpool(rt.cache.get, key) if rt.cache.enabled else None
        if cached is not None:
            return json.loads(cached)
        start = time.perf_counter()
        async with rt.decode_slots:
            result = await run_in_threadpool(compute_peaks, Path(opened.path), n)
        rt.metrics.observe("peaks", time.perf_counter() - start)
    finally:
        opened.close()
    if rt.cache.enabled:
        await run_in_threadpool(rt.cache.set, key, json.dumps(result).encode(), 30 * 24 * 3600)
    return result
