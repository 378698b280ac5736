"""``indexer export``: a collection's vectors and metadata as Parquet, for notebooks, other
vector databases, or a backup that needs no FAISS.

One row per file (or per segment with ``kind="segments"``); the vector is a fixed-size list of
float32. The file's key-value metadata carries the collection and its model manifest, so the
export says which model made the vectors. Written in row groups, page by page from the
database: memory stays flat for any collection size.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from indexer.store.db import Database
from indexer.store.schema import (
    STATUS_INDEXED,
    Collection,
    File,
    FileVector,
    Segment,
    SegmentVector,
    vector_from_bytes,
)

PAGE = 10_000


def _schema(dim: int, kind: str, collection: Collection):
    import pyarrow as pa

    vector = pa.list_(pa.float32(), dim)
    if kind == "files":
        fields = [
            ("id", pa.int64()),
            ("path", pa.string()),
            ("size", pa.int64()),
            ("mtime_ns", pa.int64()),
            ("content_hash", pa.string()),
            ("duration_s", pa.float64()),
            ("format", pa.string()),
            ("sample_rate", pa.int32()),
            ("channels", pa.int32()),
            ("tags", pa.string()),
            ("vector", vector),
        ]
    else:
        fields = [
            ("id", pa.int64()),
            ("file_id", pa.int64()),
            ("path", pa.string()),
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
            ("vector", vector),
        ]
    meta = {
        "clapsearch.collection": collection.name,
        "clapsearch.kind": kind,
        "clapsearch.model_name": collection.model_name,
        "clapsearch.model_fingerprint": collection.model_fingerprint,
        "clapsearch.manifest": json.dumps(collection.manifest),
    }
    return pa.schema(fields, metadata=meta)


def export_parquet(db: Database, collection: Collection, out: Path, *, kind: str = "files") -> int:
    """Write ``out``; returns the number of rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(collection.dim, kind, collection)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    total, last = 0, 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        while True:
            with db.session() as s:
                if kind == "files":
                    rows = s.execute(
                        select(
                            File.id,
                            File.path,
                            File.size,
                            File.mtime_ns,
                            File.content_hash,
                            File.duration_s,
                            File.format,
                            File.sample_rate,
                            File.channels,
                            File.tags,
                            FileVector.vector,
                        )
                        .join(FileVector, FileVector.file_id == File.id)
                        .where(File.collection_id == collection.id, File.status == STATUS_INDEXED, File.id > last)
                        .order_by(File.id)
                        .limit(PAGE)
                    ).all()
                else:
                    rows = s.execute(
                        select(
                            Segment.id, Segment.file_id, File.path, Segment.start_s, Segment.end_s, SegmentVector.vector
                        )
                        .join(File, File.id == Segment.file_id)
                        .join(SegmentVector, SegmentVector.segment_id == Segment.id)
                        .where(Segment.collection_id == collection.id, Segment.id > last)
                        .order_by(Segment.id)
                        .limit(PAGE)
                    ).all()
            if not rows:
                break
            columns = list(zip(*rows))
            vectors = np.stack([vector_from_bytes(b) for b in columns[-1]]).astype(np.float32)
            flat = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), collection.dim)
            arrays = [pa.array(c, type=f.type) for c, f in zip(columns[:-1], schema)]
            if kind == "files":
                arrays[9] = pa.array([json.dumps(t) if t else None for t in columns[9]], pa.string())
            writer.write_batch(pa.record_batch(arrays + [flat], schema=schema))
            total += len(rows)
            last = rows[-1][0]
    tmp.replace(out)
    return total
