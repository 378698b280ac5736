"""Distributed ingest on a Ray cluster: many machines turn audio files into Parquet "vector
shards"; one machine imports the shards into a collection and builds its index.

    summary = ray_embed(["s3://bucket/library/**.wav"], Path("models/clapsearch-sfx-v2"), "s3://bucket/shards",
                        num_actors=16, num_gpus_per_actor=1, segments=SegmentSpec(10, 5))
    report = import_shards(Store.open(settings), "default", "s3://bucket/shards")

``ray_embed``: a ``ray.data`` dataset of file URLs -> ``map_batches`` over a pool of actors that
each open the model once (CUDA when given a GPU) and process every file as ``indexer ingest`` does
(``indexer.ingest.worker._process``: hash, metadata, views, segment windows, error codes). Remote
files (any fsspec URL) are copied to a local temp file (the decoder needs to seek); local paths are
read in place and recorded as absolute paths, as ``indexer ingest`` records them. A bad file is a
row with ``error_code``/``error``, never a failed task. One shard per batch, named after a hash of
its URLs (a retried batch overwrites its own shard).

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

import hashlib
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from indexer.audio.clip import ClipViews
from indexer.audio.decode import DecodeLimits
from indexer.errors import StoreError
from indexer.ingest.discover import AUDIO_EXTENSIONS
from indexer.ingest.worker import DecodeTask, _process, error_of
from indexer.models.manifest import load_manifest
from indexer.store.catalog import FileRecord, SegmentSpec

from indexer.ingest.shards import (  # noqa: F401  (the shard API is re-exported here)
    INSTALL_HINT, LIST_SUFFIXES, MANIFEST, SHARD_FORMAT, _check_model, _local_path, _model_folder,
    _mtime_ns, _out_fs, _require, _spec, expand_sources, read_shard_manifest, records_from_batch,
    records_table, shard_manifest, shard_schema)



@dataclass
class _Item:
    """One file in an actor; stands in for ``_process``'s results queue (``put``)."""

    url: str
    owner: _Embedder
    size: int = 0
    mtime_ns: int = 0
    meta: dict | None = None
    vector: np.ndarray | None = None
    spans: list = field(default_factory=list)
    seg_vectors: list = field(default_factory=list)
    error: tuple[str, str] | None = None

    def record(self) -> FileRecord:
        if self.error is not None:
            return FileRecord(self.url, self.size, self.mtime_ns, content_hash=(self.meta or {}).get("content_hash"),
                              error_code=self.error[0], error=self.error[1])
        segments = [(a, b, v) for (a, b), v in zip(self.spans, self.seg_vectors)]
        return FileRecord(self.url, self.size, self.mtime_ns, vector=self.vector, segments=segments or None,
                          **self.meta)

    def put(self, message: tuple) -> None:
        kind, _task, *rest = message
        if kind == "meta":
            self.meta = rest[0]
        elif kind == "views":                 # views go to the actor's batcher, vectors come back here
            view_kind, features, is_longer, spans = rest
            for i in range(len(features)):
                slot = None
                if view_kind == "segments":
                    slot = len(self.spans)
                    self.spans.append(spans[i])
                    self.seg_vectors.append(None)
                self.owner.add(self, slot, ClipViews(features[i], bool(is_longer[i])))


class _Embedder:
    """A Ray actor: opens the model once; each call turns a batch of URLs into one shard file."""

    def __init__(self, model_dir, variant, device, threads, segments, limits, batch_size, out_dir, fingerprint):
        from indexer.models.encoder import ClapEncoder

        self.encoder = ClapEncoder.open(_model_folder(model_dir), variant=variant, device=device, threads=threads)
        self.spec = self.encoder.manifest.audio_frontend
        self.threads, self.segments, self.limits, self.batch_size = threads, segments, limits, batch_size
        self.fs, self.root = _out_fs(out_dir)
        self.schema = shard_schema(self.encoder.dim, fingerprint)
        self.lock = threading.Lock()
        self.buffer: list[tuple[_Item, int | None, ClipViews]] = []
        self.fatal: Exception | None = None

    def __call__(self, batch):
        import pyarrow as pa
        import pyarrow.parquet as pq

        urls, self.fatal = batch.column("url").to_pylist(), None
        with tempfile.TemporaryDirectory(prefix="clapsearch-ray-") as self.tmp, \
                ThreadPoolExecutor(self.threads) as pool:      # decode threads feed one batcher
            items = list(pool.map(self.one, urls))
        self.flush()
        if self.fatal is not None:          # the model failed, not a file: fail the batch, not its files
            raise self.fatal
        name = "part-" + hashlib.sha1("\n".join(urls).encode()).hexdigest()[:20] + ".parquet"
        table = records_table([item.record() for item in items], self.schema)
        final, partial = f"{self.root}/{name}", f"{self.root}/.{name}.partial"
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else self.fs.protocol
        local = "file" in protocols        # object stores write a whole object at once: no rename
        with self.fs.open(partial if local else final, "wb") as handle:
            pq.write_table(table, handle, compression="zstd")
        if local:
            os.replace(partial, final)
        return pa.table({"shard": [name], "files": [len(items)],
                         "failed": [sum(item.error is not None for item in items)],
                         "audio_s": [sum((item.meta or {}).get("duration_s") or 0.0 for item in items)]})

    def one(self, url: str) -> _Item:
        item, local, copy, fetching = _Item(url, self), _local_path(url), None, True
        try:
            if local is None:
                fs, path = _require("fsspec").core.url_to_fs(url)
                info = fs.info(path)
                item.size, item.mtime_ns = int(info.get("size") or 0), _mtime_ns(info)
                copy = os.path.join(self.tmp, f"{threading.get_ident()}-{os.path.basename(path)}")
                fs.get_file(path, copy)
                local = copy
            else:
                st = os.stat(local)
                item.size, item.mtime_ns = st.st_size, st.st_mtime_ns
            fetching = False
            _process(DecodeTask(0, local, item.size, item.mtime_ns), item, self.spec, self.limits, self.segments)
        except Exception as exc:  # one bad file costs one row, never the task
            code, message = error_of(exc)
            code = "file.fetch" if fetching and code == "audio.decode" else code
            item.error = (code, message.replace(copy, url) if copy else message)
        finally:
            if copy and os.path.exists(copy):
                os.remove(copy)
        return item

    def add(self, item: _Item, slot: int | None, views: ClipViews) -> None:
        with self.lock:
            self.buffer.append((item, slot, views))
            if len(self.buffer) < self.batch_size:
                return
            batch, self.buffer = self.buffer, []
        self._embed(batch)

    def flush(self) -> None:
        with self.lock:
            batch, self.buffer = self.buffer, []
        self._embed(batch)

    def _embed(self, batch) -> None:
        try:
            vectors = self.encoder.embed_views([v for *_, v in batch])
        except Exception as exc:
            self.fatal = exc
            raise
        for (item, slot, _), vector in zip(batch, vectors):
            if slot is None:
                item.vector = vector
            else:
                item.seg_vectors[slot] = vector


def ray_embed(sources: list[str] | str, model_dir: Path | str, out_dir: Path | str, *, variant: str | None = None,
              segments: SegmentSpec | None = None, num_actors: int | None = None,
              num_gpus_per_actor: float = 0, num_cpus_per_actor: float = 1, batch_size: int = 64,
              files_per_shard: int = 1000, limits: DecodeLimits = DecodeLimits(),
              extensions=AUDIO_EXTENSIONS, max_failed_batches: int = 0) -> dict:
    """Embed every file named by ``sources`` on the Ray cluster (``ray.init`` first, or a local
    Ray is started) into Parquet shards under ``out_dir``. ``batch_size``: views per ONNX call;
    ``files_per_shard``: files per actor call and shard. A batch whose actor dies (node lost,
    decoder crash) is retried 3 times; after that it fails the run, unless ``max_failed_batches``
    (-1: any number) allows skipping it: its files are then ``missing`` from the shards.
    Returns files, failed, missing, shards, seconds."""
    ray = _require("ray")
    import pyarrow as pa

    started = time.perf_counter()
    model_dir = _local_path(str(model_dir)) or str(model_dir)        # actors may run in another folder
    out_dir = _local_path(str(out_dir)) or str(out_dir)
    manifest = load_manifest(_model_folder(model_dir))
    variant = variant or manifest.default_variant
    header = shard_manifest(manifest, variant, segments)
    fs, root = _out_fs(out_dir)
    fs.makedirs(root, exist_ok=True)
    if fs.exists(f"{root}/{MANIFEST}"):                 # adding to earlier shards: same model and spec
        earlier = read_shard_manifest(out_dir)
        _check_model(earlier, manifest.fingerprint, out_dir)
        if _spec(earlier) != segments:
            raise StoreError(f"{out_dir} holds shards with segments {earlier.get('segments')}; "
                             f"write segments {header['segments']} to another folder")
        header["runs"] = earlier.get("runs", [])
    urls = expand_sources(sources, extensions=extensions)
    if not urls:
        raise FileNotFoundError(f"no audio files found in {sources}")
    with fs.open(f"{root}/{MANIFEST}", "wt") as handle:
        json.dump(header, handle, indent=2)
    if not ray.is_initialized():
        ray.init()
    if num_actors is None:
        have = ray.cluster_resources().get("GPU" if num_gpus_per_actor else "CPU", 1)
        num_actors = max(1, int(have // (num_gpus_per_actor or num_cpus_per_actor)))
    per_shard = max(1, min(files_per_shard, -(-len(urls) // (4 * num_actors))))
    blocks = [pa.table({"url": urls[i : i + per_shard]}) for i in range(0, len(urls), per_shard)]
    resources = {"num_cpus": num_cpus_per_actor} | ({"num_gpus": num_gpus_per_actor} if num_gpus_per_actor else {})
    actor_args = (model_dir, variant, "auto" if num_gpus_per_actor else "cpu", max(1, int(num_cpus_per_actor)),
                  segments, limits, batch_size, out_dir, manifest.fingerprint)
    dataset = ray.data.from_arrow(blocks).map_batches(
        _Embedder, batch_size=per_shard, batch_format="pyarrow", fn_constructor_args=actor_args,
        compute=ray.data.ActorPoolStrategy(size=num_actors), max_restarts=-1, max_task_retries=3, **resources)
    context = ray.data.DataContext.get_current()
    saved, context.max_errored_blocks = context.max_errored_blocks, max_failed_batches
    try:
        rows = dataset.take_all()
    finally:
        context.max_errored_blocks = saved
    summary = {"files": sum(r["files"] for r in rows), "failed": sum(r["failed"] for r in rows),
               "missing": len(urls) - sum(r["files"] for r in rows),
               "audio_seconds": sum(r["audio_s"] for r in rows), "shards": len(rows),
               "actors": num_actors, "seconds": time.perf_counter() - started, "out": str(out_dir)}
    header["runs"] = header.get("runs", []) + [dict(summary, finished=datetime.now().isoformat())]
    with fs.open(f"{root}/{MANIFEST}", "wt") as handle:
        json.dump(header, handle, indent=2)
    return summary


# ----------------------------------------------------------------------------- the index side

def import_shards(store, collection: str, shard_dir, *, segments: SegmentSpec | None = None,
                  batch: int = 500) -> dict:
    """Upsert the rows of every shard in ``shard_dir`` into ``collection`` of ``store``
    (``indexer.store.Store``), one transaction per ``batch`` rows, then publish its index."""
    import pyarrow.parquet as pq

    from indexer.store import catalog

    started = time.perf_counter()
    found = read_shard_manifest(shard_dir)
    fingerprint = store.manifest.fingerprint
    _check_model(found, fingerprint, shard_dir)
    shard_spec = _spec(found)
    if segments is not None and shard_spec is not None and segments != shard_spec:
        raise StoreError(f"{shard_dir} holds segments {found['segments']}, not {segments}")
    target = store.open_collection(collection, segments=segments or shard_spec)
    have = catalog.segment_spec(target)
    if shard_spec is not None and have is not None and have != shard_spec:
        raise StoreError(f"collection {collection!r} has {have.seconds:g} s segments every {have.hop:g} s; "
                         f"{shard_dir} holds {shard_spec.seconds:g} s every {shard_spec.hop:g} s")
    fs, root = _out_fs(shard_dir)
    shards = sorted(p for p in fs.glob(f"{root}/*.parquet") if not p.rsplit("/", 1)[-1].startswith((".", "_")))
    dim = store.manifest.embed_dim
    totals = {"files": 0, "failed": 0, "segments": 0}
    with store.lock(collection):
        for shard in shards:
            with fs.open(shard, "rb") as handle:
                reader = pq.ParquetFile(handle)
                meta = reader.schema_arrow.metadata or {}
                _check_model({"model": {"fingerprint": meta.get(b"clapsearch.model_fingerprint", b"").decode()}},
                             fingerprint, shard)
                for record_batch in reader.iter_batches(batch_size=batch):
                    records = {r.path: r for r in records_from_batch(record_batch, dim)}   # last row wins
                    catalog.write_files(store.db, target.id, list(records.values()))
                    totals["files"] += len(records)
                    totals["failed"] += sum(r.error_code is not None for r in records.values())
                    totals["segments"] += sum(len(r.segments or ()) for r in records.values())
        published = store.publish(store.collection(collection))
    return {"collection": collection, "shards": len(shards), **totals, "published": published,
            "seconds": time.perf_counter() - started}
