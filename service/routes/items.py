"""Indexed items: metadata, the audio file itself (with HTTP Range, so browsers can seek) and
waveform peaks for thumbnails. Only files the database lists as indexed are ever served, and
each request re-checks the file on disk (``indexer.query.open_item_audio``: no symlink swapped
in, nothing outside the allowed roots) and serves the very file it checked."""

from __future__ import annotations

import json
import mimetypes
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from indexer.query import ItemAudio, item_row, open_item_audio
from service.problems import ProblemError
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
}
PEAK_BLOCK_FRAMES = 1 << 16


@router.get("/v1/items/{item_id}", response_model=Item, summary="Item metadata")
async def item(request: Request, item_id: int):
    rt: Runtime = request.app.state.runtime
    row, collection = await run_in_threadpool(item_row, rt.store, item_id)
    return {
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
        "audio_url": f"/v1/items/{row.id}/audio",
        "peaks_url": f"/v1/items/{row.id}/peaks",
    }


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
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.opened.close()


async def _open(rt: Runtime, item_id: int):
    row, _ = await run_in_threadpool(item_row, rt.store, item_id)
    return row, await run_in_threadpool(open_item_audio, row, rt.settings.allowed_ingest_roots)


@router.get(
    "/v1/items/{item_id}/audio",
    summary="Stream the audio file",
    response_class=FileResponse,
    responses={206: {"description": "a byte range"}},
)
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
    """min/max of the channel mean in ``n`` equal buckets, reading blocks (bounded memory)."""
    import soundfile as sf

    try:
        handle = sf.SoundFile(str(path))
    except Exception as exc:
        raise ProblemError("audio.decode", str(exc)) from None
    with handle:
        frames, rate = handle.frames, handle.samplerate
        lows, highs = np.full(n, np.inf, np.float32), np.full(n, -np.inf, np.float32)
        position = 0
        try:
            for block in handle.blocks(blocksize=PEAK_BLOCK_FRAMES, dtype="float32", always_2d=True):
                mono = block.mean(axis=1)
                bucket = ((position + np.arange(len(mono))) * n // max(frames, 1)).clip(0, n - 1)
                np.minimum.at(lows, bucket, mono)
                np.maximum.at(highs, bucket, mono)
                position += len(mono)
        except Exception:
            pass  # a truncated tail: draw what decoded
    empty = ~np.isfinite(lows)
    lows[empty], highs[empty] = 0.0, 0.0
    return {
        "n": n,
        "duration_s": round(frames / rate, 3) if rate else 0.0,
        "min": [round(float(v), 4) for v in lows],
        "max": [round(float(v), 4) for v in highs],
    }


@router.get("/v1/items/{item_id}/peaks", response_model=Peaks, summary="Waveform thumbnail data")
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
