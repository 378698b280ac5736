"""Vector shards: the Parquet files distributed ingest (``indexer.ingest.distributed``) writes,
and ``import_shards``, which upserts them into a collection on the index machine.

    report = import_shards(Store.open(settings), "default", "s3://bucket/shards")

Shard schema (one row per file; ``D`` = the model's embed_dim; schema metadata
``clapsearch.model_fingerprint``):

    path          string      local absolute path, or the URL as listed
    size          int64       bytes
    mtime_ns      int64       local: st_mtime_ns; remote: the store's modification time, else 0
    content_hash  string      sha256 of the bytes (null if the file could not be read)
    duration_s    double      null on error, like the columns down to tags
    format, subtype  string   libsndfile's container and sample format
    sample_rate, channels  int32   of the file as stored
    tags          string      JSON object of the file's text tags, or null
    vector        fixed_size_list<float32>[D]   unit-norm whole-file vector, null on error
    error_code, error  string null when the file was embedded
    segments      list<struct<start_s: double, end_s: double, vector: fixed_size_list<float32>[D]>>
                  windows of files longer than the segment length, null when none

``_manifest.json`` beside the shards names the model (name, fingerprint, variant, embed_dim) and
segment spec. ``import_shards`` refuses another model's shards (``ModelMismatchError``), reads them
in row batches, upserts rows by path (re-importing duplicates nothing) and publishes the index.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.errors import ManifestError, ModelMismatchError, StoreError
from indexer.ingest.discover import require
from indexer.store.catalog import FileRecord, SegmentSpec, segment_spec, write_files

if TYPE_CHECKING:
    import pyarrow as pa
    from fsspec import AbstractFileSystem

    from indexer.models.manifest import Manifest
    from indexer.store.store import Store

MANIFEST = "_manifest.json"
SHARD_FORMAT = "clapsearch.vector-shards/1"
_SCALARS = tuple(
    "path size mtime_ns content_hash duration_s format subtype sample_rate channels error_code error".split()
)


def shard_schema(dim: int, fingerprint: str = "") -> pa.Schema:
    import pyarrow as pa

    vector = pa.list_(pa.float32(), dim)
    segment = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64()), ("vector", vector)])
    return pa.schema(
        [
            ("path", pa.string()),
            ("size", pa.int64()),
            ("mtime_ns", pa.int64()),
            ("content_hash", pa.string()),
            ("duration_s", pa.float64()),
            ("format", pa.string()),
            ("subtype", pa.string()),
            ("sample_rate", pa.int32()),
            ("channels", pa.int32()),
            ("tags", pa.string()),
            ("vector", vector),
            ("error_code", pa.string()),
            ("error", pa.string()),
            ("segments", pa.list_(segment)),
        ],
        metadata={"clapsearch.model_fingerprint": fingerprint},
    )


def records_table(records: list[FileRecord], schema: pa.Schema) -> pa.Table:
    """FileRecords -> one Arrow table of ``shard_schema``."""
    import pyarrow as pa

    dim = schema.field("vector").type.list_size
    vectors = np.zeros((len(records), dim), np.float32)
    for i, r in enumerate(records):
        if r.vector is not None:
            vectors[i] = r.vector
    flat = [s for r in records for s in (r.segments or ())]
    seg_vectors = np.asarray([v for *_, v in flat], np.float32).reshape(len(flat), dim)
    seg_type = schema.field("segments").type
    structs = pa.StructArray.from_arrays(
        [
            pa.array([s[0] for s in flat], pa.float64()),
            pa.array([s[1] for s in flat], pa.float64()),
            pa.FixedSizeListArray.from_arrays(pa.array(seg_vectors.ravel()), dim),
        ],
        fields=list(seg_type.value_type),
    )
    offsets = np.concatenate([[0], np.cumsum([len(r.segments or ()) for r in records])]).astype(np.int32)
    columns = {name: pa.array([getattr(r, name) for r in records], schema.field(name).type) for name in _SCALARS}
    columns["tags"] = pa.array([json.dumps(r.tags) if r.tags else None for r in records], pa.string())
    columns["vector"] = pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.ravel()), dim, mask=pa.array([r.vector is None for r in records])
    )
    columns["segments"] = pa.ListArray.from_arrays(
        pa.array(offsets), structs, type=seg_type, mask=pa.array([not r.segments for r in records])
    )
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def _matrix(array: pa.FixedSizeListArray, dim: int) -> np.ndarray:
    """(n, dim) float32 of a (possibly sliced) fixed-size-list array; null rows read as zeros."""
    values = array.values.slice(array.offset * dim, len(array) * dim)
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(array), dim)


def records_from_batch(batch: pa.RecordBatch, dim: int) -> list[FileRecord]:
    """One Arrow record batch of a shard -> FileRecords (vectors copied out of Arrow memory)."""
    cols = {name: batch.column(name).to_pylist() for name in _SCALARS + ("tags",)}
    vcol = batch.column("vector")
    vectors, has_vector = _matrix(vcol, dim), vcol.is_valid().to_numpy(zero_copy_only=False)
    scol = batch.column("segments")
    lengths = scol.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    starts = ends = np.zeros(0)  # no segment in this batch: never indexed
    seg_vectors = np.zeros((0, dim), np.float32)
    if splits[-1]:
        start_col, end_col, vector_col = scol.flatten().flatten()
        starts, ends = start_col.to_numpy(zero_copy_only=False), end_col.to_numpy(zero_copy_only=False)
        seg_vectors = _matrix(vector_col, dim)
    out = []
    for i in range(batch.num_rows):
        a, b = splits[i], splits[i + 1]
        segments = [(float(starts[j]), float(ends[j]), seg_vectors[j].copy()) for j in range(a, b)]
        tags = cols["tags"][i]
        out.append(
            FileRecord(
                **{name: cols[name][i] for name in _SCALARS},
                tags=json.loads(tags) if tags else None,
                vector=vectors[i].copy() if has_vector[i] else None,
                segments=segments or None,
            )
        )
    return out


def shard_fs(out_dir: Any) -> tuple[AbstractFileSystem, str]:
    """The filesystem of a shard folder (path or URL) and the folder's path on it."""
    fs, root = require("fsspec").core.url_to_fs(str(out_dir))
    return fs, root.rstrip("/")


def read_shard_manifest(shard_dir: Any) -> dict:
    fs, root = shard_fs(shard_dir)
    try:
        with fs.open(f"{root}/{MANIFEST}", "rt") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ManifestError(f"{shard_dir}: no {MANIFEST}; not a shard folder written by ray_embed") from None


def shard_manifest(manifest: Manifest, variant: str, segments: SegmentSpec | None) -> dict:
    """The ``_manifest.json`` of a shard folder: which model (and segment spec) made its vectors."""
    return {
        "format": SHARD_FORMAT,
        "model": {
            "name": manifest.name,
            "fingerprint": manifest.fingerprint,
            "variant": variant,
            "embed_dim": manifest.embed_dim,
        },
        "segments": None if segments is None else {"seconds": segments.seconds, "hop": segments.hop},
    }


def check_model(found: dict, fingerprint: str, where: Any) -> None:
    model = found.get("model") or {}
    if model.get("fingerprint") != fingerprint:
        raise ModelMismatchError(
            f"{where} holds vectors of model {model.get('name')!r} "
            f"({model.get('fingerprint')}), not this store's model ({fingerprint})"
        )


def shard_spec(found: dict) -> SegmentSpec | None:
    return SegmentSpec(**found["segments"]) if found.get("segments") else None


def import_shards(
    store: Store, collection: str, shard_dir: Any, *, segments: SegmentSpec | None = None, batch: int = 500
) -> dict:
    """Upsert the rows of every shard in ``shard_dir`` into ``collection`` of ``store``
    (``indexer.store.Store``), one transaction per ``batch`` rows, then publish its index."""
    import pyarrow.parquet as pq

    started = time.perf_counter()
    found = read_shard_manifest(shard_dir)
    fingerprint = store.manifest.fingerprint
    check_model(found, fingerprint, shard_dir)
    spec = shard_spec(found)
    if segments is not None and spec is not None and segments != spec:
        raise StoreError(f"{shard_dir} holds segments {found['segments']}, not {segments}")
    target = store.open_collection(collection, segments=segments or spec)
    have = segment_spec(target)
    if spec is not None and have is not None and have != spec:
        raise StoreError(
            f"collection {collection!r} has {have.seconds:g} s segments every {have.hop:g} s; "
            f"{shard_dir} holds {spec.seconds:g} s every {spec.hop:g} s"
        )
    fs, root = shard_fs(shard_dir)
    shards = sorted(p for p in fs.glob(f"{root}/*.parquet") if not p.rsplit("/", 1)[-1].startswith((".", "_")))
    dim = store.manifest.embed_dim
    totals = {"files": 0, "failed": 0, "segments": 0}
    with store.lock(collection):
        for shard in shards:
            with fs.open(shard, "rb") as handle:
                reader = pq.ParquetFile(handle)
                meta = reader.schema_arrow.metadata or {}
                check_model(
                    {"model": {"fingerprint": meta.get(b"clapsearch.model_fingerprint", b"").decode()}},
                    fingerprint,
                    shard,
                )
                for record_batch in reader.iter_batches(batch_size=batch):
                    records = {r.path: r for r in records_from_batch(record_batch, dim)}  # last row wins
                    write_files(store.db, target.id, list(records.values()))
                    totals["files"] += len(records)
                    totals["failed"] += sum(r.error_code is not None for r in records.values())
                    totals["segments"] += sum(len(r.segments or ()) for r in records.values())
        published = store.publish(store.collection(collection))
    return {
        "collection": collection,
        "shards": len(shards),
        **totals,
        "published": published,
        "seconds": time.perf_counter() - started,
    }
