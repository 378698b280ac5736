"""Distributed ingest on a Ray cluster: many machines turn audio files into Parquet "vector
shards"; one machine imports them (``indexer.ingest.shards.import_shards``).

    summary = ray_embed(["s3://bucket/library/**.wav"], Path("models/clapsearch-sfx-v2"), "s3://bucket/shards",
                        num_actors=16, num_gpus_per_actor=1, segments=SegmentSpec(10, 5))

``ray_embed``: a ``ray.data`` dataset of file URLs -> ``map_batches`` over a pool of actors that
each open the model once (CUDA when given a GPU) and process every file as ``indexer ingest`` does
(``indexer.ingest.worker.process_file``: hash, metadata, views, segment windows, error codes).
Remote files (any fsspec URL) are copied to a local temp file (the decoder needs to seek); local
paths are read in place and recorded as absolute paths, as ``indexer ingest`` records them. A bad
file is a row with ``error_code``/``error``, never a failed task. One shard per batch, named after
a hash of its URLs (a retried batch overwrites its own shard).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.audio.clip import ClipViews
from indexer.audio.decode import DecodeLimits
from indexer.errors import AudioDecodeError, FileFetchError, StoreError
from indexer.ingest.discover import AUDIO_EXTENSIONS, expand_sources, local_copy, local_path, mtime_ns, require
from indexer.ingest.shards import (
    MANIFEST,
    check_model,
    read_shard_manifest,
    records_table,
    shard_fs,
    shard_manifest,
    shard_schema,
    shard_spec,
)
from indexer.ingest.worker import DecodeTask, FileResult, Message, error_of, process_file
from indexer.models.manifest import MANIFEST_NAME, load_manifest
from indexer.store.catalog import SegmentSpec

if TYPE_CHECKING:
    import pyarrow as pa


def model_folder(model_dir: str | Path) -> Path:
    """A local folder with the model: ``model_dir`` itself, or a cached copy of a remote one."""
    local = local_path(str(model_dir))
    if local is not None:
        return Path(local)
    fs, root = require("fsspec").core.url_to_fs(str(model_dir))
    key = hashlib.sha1(str(model_dir).encode() + fs.cat_file(f"{root.rstrip('/')}/{MANIFEST_NAME}")).hexdigest()
    target = Path(tempfile.gettempdir()) / "clapsearch-models" / key[:16]
    if not (target / MANIFEST_NAME).is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=target.parent))
        fs.get(root.rstrip("/") + "/", str(partial) + "/", recursive=True)
        try:
            os.replace(partial, target)  # another actor on this node may have won
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
    return target


class ShardEmbedder:
    """A Ray actor: opens the model once; each call turns a batch of URLs into one shard file."""

    def __init__(
        self,
        model_dir: str | Path,
        variant: str | None,
        device: str,
        threads: int,
        segments: SegmentSpec | None,
        limits: DecodeLimits,
        batch_size: int,
        out_dir: str | Path,
        fingerprint: str,
    ):
        from indexer.models.encoder import ClapEncoder

        self.encoder = ClapEncoder.open(model_folder(model_dir), variant=variant, device=device, threads=threads)
        self.spec = self.encoder.manifest.audio_frontend
        self.threads, self.segments, self.limits, self.batch_size = threads, segments, limits, batch_size
        self.fs, self.root = shard_fs(out_dir)
        self.schema = shard_schema(self.encoder.dim, fingerprint)
        self.lock = threading.Lock()
        self.buffer: list[tuple[FileResult, int | None, ClipViews]] = []
        self.fatal: Exception | None = None

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa
        import pyarrow.parquet as pq

        urls, self.fatal = batch.column("url").to_pylist(), None
        with ThreadPoolExecutor(self.threads) as pool:  # decode threads feed one batcher
            items = list(pool.map(self.one, urls))
        self.flush()
        if self.fatal is not None:  # the model failed, not a file: fail the batch, not its files
            raise self.fatal
        name = "part-" + hashlib.sha1("\n".join(urls).encode()).hexdigest()[:20] + ".parquet"
        table = records_table([item.record() for item in items], self.schema)
        final, partial = f"{self.root}/{name}", f"{self.root}/.{name}.partial"
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else self.fs.protocol
        local = "file" in protocols  # object stores write a whole object at once: no rename
        with self.fs.open(partial if local else final, "wb") as handle:
            pq.write_table(table, handle, compression="zstd")
        if local:
            os.replace(partial, final)
        return pa.table(
            {
                "shard": [name],
                "files": [len(items)],
                "failed": [sum(item.error is not None for item in items)],
                "audio_s": [sum((item.meta or {}).get("duration_s") or 0.0 for item in items)],
            }
        )

    def one(self, url: str) -> FileResult:
        item, local, copy, fetching = FileResult(url, 0, 0), local_path(url), None, True
        try:
            if local is None:
                fs, path = require("fsspec").core.url_to_fs(url)
                info = fs.info(path)
                item.size, item.mtime_ns = int(info.get("size") or 0), mtime_ns(info)
                local = copy = local_copy(url)
            else:
                st = os.stat(local)
                item.size, item.mtime_ns = st.st_size, st.st_mtime_ns
            fetching = False
            process_file(
                DecodeTask(0, local, item.size, item.mtime_ns),
                lambda message: self.add(item, message),
                self.spec,
                self.limits,
                self.segments,
            )
        except Exception as exc:  # one bad file costs one row, never the task
            code, message = error_of(exc)
            code = FileFetchError.code if fetching and code == AudioDecodeError.code else code
            item.error = (code, message.replace(copy, url) if copy else message)
        finally:
            if copy and os.path.exists(copy):
                os.remove(copy)
        return item

    def add(self, item: FileResult, message: Message) -> None:
        """Views from a decode thread go to the one batcher; a full batch is embedded here."""
        with self.lock:
            self.buffer.extend((item, slot, views) for slot, views in item.take(message))
            if len(self.buffer) < self.batch_size:
                return
            batch, self.buffer = self.buffer, []
        self._embed(batch)

    def flush(self) -> None:
        with self.lock:
            batch, self.buffer = self.buffer, []
        self._embed(batch)

    def _embed(self, batch: list[tuple[FileResult, int | None, ClipViews]]) -> None:
        try:
            vectors = self.encoder.embed_views([v for *_, v in batch])
        except Exception as exc:
            self.fatal = exc
            raise
        for (item, slot, _), vector in zip(batch, vectors):
            item.set_vector(slot, vector)


def ray_embed(
    sources: list[str] | str,
    model_dir: Path | str,
    out_dir: Path | str,
    *,
    variant: str | None = None,
    segments: SegmentSpec | None = None,
    num_actors: int | None = None,
    num_gpus_per_actor: float = 0,
    num_cpus_per_actor: float = 1,
    batch_size: int = 64,
    files_per_shard: int = 1000,
    limits: DecodeLimits = DecodeLimits(),
    extensions: Iterable[str] = AUDIO_EXTENSIONS,
    max_failed_batches: int = 0,
) -> dict:
    """Embed every file named by ``sources`` on the Ray cluster (``ray.init`` first, or a local
    Ray is started) into Parquet shards under ``out_dir``. ``batch_size``: views per ONNX call;
    ``files_per_shard``: files per actor call and shard. A batch whose actor dies (node lost,
    decoder crash) is retried 3 times; after that it fails the run, unless ``max_failed_batches``
    (-1: any number) allows skipping it: its files are then ``missing`` from the shards.
    Returns files, failed, missing, shards, seconds."""
    ray = require("ray")
    import pyarrow as pa

    started = time.perf_counter()
    model_dir = local_path(str(model_dir)) or str(model_dir)  # actors may run in another folder
    out_dir = local_path(str(out_dir)) or str(out_dir)
    manifest = load_manifest(model_folder(model_dir))
    variant = variant or manifest.default_variant
    header = shard_manifest(manifest, variant, segments)
    fs, root = shard_fs(out_dir)
    fs.makedirs(root, exist_ok=True)
    if fs.exists(f"{root}/{MANIFEST}"):  # adding to earlier shards: same model and spec
        earlier = read_shard_manifest(out_dir)
        check_model(earlier, manifest.fingerprint, out_dir)
        if shard_spec(earlier) != segments:
            raise StoreError(
                f"{out_dir} holds shards with segments {earlier.get('segments')}; "
                f"write segments {header['segments']} to another folder"
            )
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
    actor_args = (
        model_dir,
        variant,
        "auto" if num_gpus_per_actor else "cpu",
        max(1, int(num_cpus_per_actor)),
        segments,
        limits,
        batch_size,
        out_dir,
        manifest.fingerprint,
    )
    dataset = ray.data.from_arrow(blocks).map_batches(
        ShardEmbedder,
        batch_size=per_shard,
        batch_format="pyarrow",
        fn_constructor_args=actor_args,
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        max_restarts=-1,
        max_task_retries=3,
        **resources,
    )
    context = ray.data.DataContext.get_current()
    saved, context.max_errored_blocks = context.max_errored_blocks, max_failed_batches
    try:
        rows = dataset.take_all()
    finally:
        context.max_errored_blocks = saved
    summary = {
        "files": sum(r["files"] for r in rows),
        "failed": sum(r["failed"] for r in rows),
        "missing": len(urls) - sum(r["files"] for r in rows),
        "audio_seconds": sum(r["audio_s"] for r in rows),
        "shards": len(rows),
        "actors": num_actors,
        "seconds": time.perf_counter() - started,
        "out": str(out_dir),
    }
    header["runs"] = header.get("runs", []) + [dict(summary, finished=datetime.now().isoformat())]
    with fs.open(f"{root}/{MANIFEST}", "wt") as handle:
        json.dump(header, handle, indent=2)
    return summary
