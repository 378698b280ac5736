"""Hits or a collection's files as a download: a playlist (M3U8) or a sheet (CSV)."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Request
from fastapi.responses import StreamingResponse

from indexer import exports


def exported(request: Request, records: Iterable[dict], output: str, filename: str) -> StreamingResponse:
    """Hits or files as a playlist or a sheet; playlist entries are absolute media URLs."""
    base = str(request.base_url).rstrip("/")
    body = exports.lines(records, output, locate=lambda r: base + r.get("audio_url", f"/v1/items/{r['id']}/audio"))
    return StreamingResponse(
        body,
        media_type=exports.MEDIA_TYPES[output],
        headers={"Content-Disposition": f'attachment; filename="{filename}.{output}"'},
    )
