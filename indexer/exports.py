"""Search results and collections as playlists (M3U8) and spreadsheets (CSV), so they open in
players, DAWs and sheet tools: ``indexer search rain --output m3u8 > rain.m3u8``,
``indexer export --out library.csv``, ``GET /v1/search?q=rain&output=m3u8``.

Rows are the hit records the CLI and the API share (``indexer.query.hit_record``). In a
playlist each entry is located by ``locate(record)``: the file's path for the CLI, an absolute
media URL for the API (a remote player cannot open the server's paths). A moment inside a long
file carries VLC's start/stop options, which other players ignore.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from sqlalchemy import select

from indexer.store.schema import STATUS_INDEXED, File

if TYPE_CHECKING:
    from indexer.store.db import Database

FORMATS = ("m3u8", "csv")
MEDIA_TYPES = {"m3u8": "audio/x-mpegurl", "csv": "text/csv"}
CSV_COLUMNS = ("rank", "id", "name", "path", "score", "relevance", "duration_s", "format", "start_s", "end_s", "tags")
PAGE = 5_000


def _one_line(text: str) -> str:
    """Playlist titles and paths are line-based: a new line in a name must not start an entry."""
    return " ".join(str(text).splitlines())


def iter_m3u8(records: Iterable[dict], locate: Callable[[dict], str]) -> Iterator[str]:
    yield "#EXTM3U\n"
    for record in records:
        seconds = record.get("duration_s")
        title = record.get("name") or record.get("path") or ""
        if record.get("score") is not None:
            title = f"{title} (score {record['score']:.3f})"
        yield f"#EXTINF:{round(seconds) if seconds is not None else -1},{_one_line(title)}\n"
        if record.get("start_s") is not None and record.get("end_s") is not None:
            yield f"#EXTVLCOPT:start-time={record['start_s']:.2f}\n#EXTVLCOPT:stop-time={record['end_s']:.2f}\n"
        yield _one_line(locate(record)) + "\n"


def iter_csv(records: Iterable[dict]) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rank, record in enumerate(records, 1):
        row = {**record, "rank": rank, "tags": json.dumps(record.get("tags") or {}, ensure_ascii=False)}
        writer.writerow(["" if row.get(c) is None else row[c] for c in CSV_COLUMNS])
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    yield out.getvalue()


def lines(records: Iterable[dict], output: str, locate: Callable[[dict], str]) -> Iterator[str]:
    """The export as text chunks, streamed (a collection of any size in bounded memory)."""
    if output == "m3u8":
        return iter_m3u8(records, locate)
    if output == "csv":
        return iter_csv(records)
    raise ValueError(f"unknown output {output!r}; choose one of {', '.join(FORMATS)}")


def render(records: Iterable[dict], output: str, locate: Callable[[dict], str]) -> str:
    return "".join(lines(records, output, locate))


def collection_records(db: Database, collection_id: int) -> Iterator[dict]:
    """Every indexed file of a collection as a record (no score), in id order, page by page."""
    last = 0
    columns = (File.id, File.path, File.duration_s, File.format, File.tags)
    while True:
        with db.session() as s:
            rows = s.execute(
                select(*columns)
                .where(File.collection_id == collection_id, File.status == STATUS_INDEXED, File.id > last)
                .order_by(File.id)
                .limit(PAGE)
            ).all()
        if not rows:
            return
        for file_id, path, duration_s, fmt, tags in rows:
            name = path.replace("\\", "/").rsplit("/", 1)[-1]
            yield {
                "id": file_id,
                "path": path,
                "name": name,
                "duration_s": duration_s,
                "format": fmt,
                "tags": tags or {},
            }
        last = rows[-1][0]
