"""``indexer ingest``: discovery -> change check -> decode workers -> batched embedding ->
transactional writes -> atomic index publish.

    report = run_ingest(IngestOptions(paths=["./library"]), store=Store.open(settings))

Stages overlap: a feeder thread walks the tree and asks the database what changed; decode
worker processes (``worker.py``) turn files into model input; the main process batches views
from all workers into ONNX calls and commits finished files in transactions. Bounded queues
between the stages keep memory flat for any library size or file length.

Crash safety: a file's row, vector and segments are committed together, so after a kill -9
the next run redoes only files that were not committed, never duplicates one (paths are unique
per collection), and the live index stays the last published version.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import TYPE_CHECKING

from indexer.audio.clip import ClipViews
from indexer.errors import DecoderCrashedError, DecodeTimeoutError
from indexer.ingest.discover import FoundFile, is_remote, walk
from indexer.ingest.report import IngestOptions, IngestReport, IngestStats
from indexer.ingest.worker import (
    DecodeTask,
    Done,
    Failed,
    FileResult,
    Message,
    Meta,
    Started,
    Unchanged,
    Views,
    die_with_parent,
    worker_main,
)
from indexer.store import catalog
from indexer.store.catalog import FileRecord
from indexer.store.schema import STATUS_FAILED
from indexer.store.status import failing_files
from indexer.store.store import Store

if TYPE_CHECKING:
    from indexer.models.encoder import ClapEncoder

__all__ = ["IngestOptions", "IngestReport", "IngestStats", "default_workers", "run_ingest"]


@dataclass
class _InFlight(FileResult):
    pending_views: int = 0
    finished: bool = False


class _Feeder(threading.Thread):
    """Walks the tree, asks the database what changed, queues decode tasks."""

    def __init__(self, store: Store, collection_id: int, options: IngestOptions, tasks: Queue, stats: IngestStats):
        super().__init__(name="ingest-feeder", daemon=True)
        self.store, self.collection_id, self.options = store, collection_id, options
        self.tasks, self.stats = tasks, stats
        self.lock = threading.Lock()
        self.submitted: dict[int, _InFlight] = {}  # queued, not yet started
        self.count = 0
        self.seen = bytearray()  # bitmap over file ids met on disk (for --prune)
        self.walk_errors: list[tuple[str, str]] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def _mark_seen(self, file_id: int) -> None:
        if file_id >= len(self.seen):
            self.seen.extend(bytes(max(file_id + 1 - len(self.seen), len(self.seen))))
        self.seen[file_id] = 1

    def run(self) -> None:
        try:
            batch: list[FoundFile] = []
            for found in walk(
                self.options.paths,
                extensions=self.options.extensions,
                follow_symlinks=self.options.follow_symlinks,
                on_error=lambda p, e: self.walk_errors.append((p, f"{e.__class__.__name__}: {e}")),
            ):
                batch.append(found)
                if len(batch) >= 500:
                    self._check(batch)
                    batch = []
                if self.stop.is_set():
                    return
            self._check(batch)
        except BaseException as exc:  # surfaced by the main loop
            self.error = exc
        finally:
            self.stats.discovery_done = True

    def _check(self, batch: list[FoundFile]) -> None:
        known = catalog.known_files(self.store.db, self.collection_id, [f.path for f in batch])
        for found in batch:
            self.stats.discovered += 1
            row = known.get(found.path)
            known_hash = None
            if row is not None:
                self._mark_seen(row.id)
                same_stat = row.size == found.size and row.mtime_ns == found.mtime_ns
                if same_stat and not (row.status == STATUS_FAILED and self.options.retry_failed):
                    self.stats.skipped += 1
                    continue
                if row.size == found.size and row.content_hash:
                    known_hash = row.content_hash  # maybe only touched: confirm by content
            with self.lock:
                self.count += 1
                task_id = self.count
                self.submitted[task_id] = _InFlight(found.path, found.size, found.mtime_ns)
            while not self.stop.is_set():
                try:
                    self.tasks.put(DecodeTask(task_id, found.path, found.size, found.mtime_ns, known_hash), timeout=0.5)
                    break
                except queue.Full:
                    continue


def _decode_worker(parent_pid: int, *args) -> None:
    """``worker_main`` with native decoder chatter captured into the failing file's error
    instead of the user's terminal (see ``stream.CAPTURE_DECODER_OUTPUT``), ended with its parent."""
    from indexer.audio import stream

    die_with_parent(parent_pid)
    stream.CAPTURE_DECODER_OUTPUT = True
    worker_main(*args)


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def run_ingest(
    store: Store, options: IngestOptions, *, progress: Callable[[IngestStats], None] | None = None
) -> IngestReport:
    """Ingest ``options.paths`` into ``options.collection`` of ``store`` (``indexer.store.Store``)."""
    return _Ingest(store, options, progress).run()


class _Ingest:
    def __init__(self, store: Store, options: IngestOptions, progress: Callable[[IngestStats], None] | None):
        self.store, self.options, self.progress = store, options, progress
        self.stats = IngestStats()
        self.failures: list[tuple[str, str, str]] = []
        self.inflight: dict[int, _InFlight] = {}
        self.buffer: list[tuple[int, int | None, ClipViews]] = []  # (task, slot, views)
        self.writes: list[FileRecord] = []
        self.touches: list[tuple[int, int]] = []
        self.last_commit = self.last_publish = time.perf_counter()
        self.workers: dict[int, BaseProcess] = {}
        self.busy: dict[int, tuple[int, float]] = {}  # worker -> (task, since)
        self.next_worker = 0
        self.encoder: ClapEncoder | None = None

    # ------------------------------------------------------------------ setup
    def run(self) -> IngestReport:
        store, options = self.store, self.options
        manifest = store.manifest
        self.collection = store.open_collection(options.collection, segments=options.segments)
        self.segments = catalog.segment_spec(self.collection)
        self.ctx = ctx = mp.get_context("spawn")  # never fork a process that runs ONNX Runtime threads
        self.n_workers = max(1, options.workers or default_workers())
        self.tasks = ctx.Queue(maxsize=4 * self.n_workers)
        self.results = ctx.Queue(maxsize=8 * self.n_workers)
        self.spec_json = manifest.audio_frontend.model_dump(mode="json")
        published = []
        # Failures already on record: one that recurs unchanged (--retry-failed on a file still
        # broken) is not rewritten, so the generation stays and nothing is republished.
        self.known_failures = {path: rest for path, *rest in failing_files(store, self.collection.id)}
        with store.lock(options.collection):
            self.feeder = _Feeder(store, self.collection.id, options, self.tasks, self.stats)
            self.feeder.start()
            try:
                self._loop()
                self._commit()
                if options.prune:
                    self.stats.removed = self._prune()
                published = store.publish(self.collection)
            finally:
                self.feeder.stop.set()
                self._stop_workers()
        if self.feeder.error is not None:
            raise self.feeder.error
        self._report_progress(force=True)
        roots = [p if is_remote(p) else os.path.abspath(p) for p in options.paths]
        failing = [
            (path, code, reason)
            for path, code, reason, *_ in failing_files(store, self.collection.id)
            if _under(path, roots)
        ]
        return IngestReport(
            options.collection,
            self.stats,
            self.failures,
            self.feeder.walk_errors,
            published,
            time.perf_counter() - self.stats.started,
            failing,
        )

    def _start_worker(self) -> None:
        wid = self.next_worker
        self.next_worker += 1
        proc = self.ctx.Process(
            target=_decode_worker,
            name=f"ingest-decode-{wid}",
            daemon=True,
            args=(os.getpid(), wid, self.tasks, self.results, self.spec_json, self.options.limits, self.segments),
        )
        proc.start()
        self.workers[wid] = proc

    def _ensure_running(self) -> None:
        # Workers first: they take ~0.4 s each to start, which overlaps loading the model.
        while len(self.workers) < self.n_workers:
            self._start_worker()
        if self.encoder is None:
            self.encoder = self.store.encoder()

    def _stop_workers(self) -> None:
        for _ in self.workers:
            try:
                self.tasks.put_nowait(None)
            except queue.Full:
                break
        deadline = time.monotonic() + 5
        for proc in self.workers.values():
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
        self.workers.clear()

    # ------------------------------------------------------------------ main loop
    def _all_done(self) -> bool:
        with self.feeder.lock:
            return self.stats.discovery_done and not self.feeder.submitted and not self.inflight and not self.buffer

    def _loop(self) -> None:
        while not self._all_done():
            if self.feeder.error is not None:
                return
            if self.feeder.count and not self.workers:
                self._ensure_running()
            try:
                message = self.results.get(timeout=0.1 if self.workers else 0.02)
            except queue.Empty:
                message = None
            if message is not None:
                self._handle(message)
            if self.buffer and (message is None or len(self.buffer) >= self.options.batch_size):
                self._embed()
            if message is None:
                self._check_workers()
            self._maybe_commit()
            self._report_progress()

    def _handle(self, message: Message) -> None:
        if isinstance(message, Started):
            with self.feeder.lock:
                self.inflight[message.task_id] = self.feeder.submitted.pop(message.task_id)
            self.busy[message.worker_id] = (message.task_id, time.monotonic())
            return
        task_id = message.task_id
        item = self.inflight.get(task_id)
        if item is None:
            return  # its file already failed (e.g. the worker was killed); late message
        if isinstance(message, Unchanged):
            row = catalog.known_files(self.store.db, self.collection.id, [item.path]).get(item.path)
            if row is not None:
                self.touches.append((row.id, item.mtime_ns))
            self.stats.skipped += 1
            self._forget(task_id)
        elif isinstance(message, (Meta, Views)):
            for slot, views in item.take(message):
                self.buffer.append((task_id, slot, views))
                item.pending_views += 1
        elif isinstance(message, Done):
            item.finished = True
            self._maybe_finish(task_id)
        elif isinstance(message, Failed):
            self._fail(task_id, message.code, message.message)

    def _forget(self, task_id: int) -> None:
        self.inflight.pop(task_id, None)
        for wid, (busy_task, _) in list(self.busy.items()):
            if busy_task == task_id:
                del self.busy[wid]

    def _fail(self, task_id: int, code: str, text: str) -> None:
        item = self.inflight[task_id]
        item.error = (code, text)
        self.failures.append((item.path, code, text))
        self.stats.failed += 1
        if self.known_failures.get(item.path) != [code, text, item.size, item.mtime_ns]:
            self.writes.append(item.record())
        self._forget(task_id)

    def _embed(self) -> None:
        batch, self.buffer = self.buffer, []
        assert self.encoder is not None, "_ensure_running() opens the model before anything is embedded"
        vectors = self.encoder.embed_views([views for *_, views in batch])
        touched = set()
        for (task_id, slot, _), vector in zip(batch, vectors):
            item = self.inflight.get(task_id)
            if item is None:
                continue
            item.set_vector(slot, vector)
            item.pending_views -= 1
            touched.add(task_id)
        for task_id in touched:
            self._maybe_finish(task_id)

    def _maybe_finish(self, task_id: int) -> None:
        item = self.inflight.get(task_id)
        if item is None or not item.finished or item.pending_views:
            return
        self.writes.append(item.record())
        self.stats.embedded += 1
        self.stats.audio_seconds += (item.meta or {}).get("duration_s") or 0.0
        self._forget(task_id)

    def _check_workers(self) -> None:
        """Replace a decoder that died or hung; its file is recorded as failed, the run goes on."""
        now = time.monotonic()
        for wid, proc in list(self.workers.items()):
            task = self.busy.get(wid)
            hung = task is not None and now - task[1] > self.options.task_timeout_s
            if proc.is_alive() and not hung:
                continue
            if hung:
                proc.kill()
                proc.join(timeout=5)
            del self.workers[wid]
            if task is not None and task[0] in self.inflight:
                reason = (
                    f"decoding took longer than {self.options.task_timeout_s:.0f} s"
                    if hung
                    else f"the decoder process died (exit code {proc.exitcode}) on this file"
                )
                self._fail(task[0], (DecodeTimeoutError if hung else DecoderCrashedError).code, reason)
            self.busy.pop(wid, None)
            self._start_worker()

    # ------------------------------------------------------------------ writes
    def _maybe_commit(self) -> None:
        now = time.perf_counter()
        if len(self.writes) >= self.options.commit_every or (self.writes and now - self.last_commit > 5):
            self._commit()
        if now - self.last_publish > self.options.publish_every_s:
            self._commit()
            self.store.publish(self.collection)
            self.last_publish = time.perf_counter()

    def _commit(self) -> None:
        if self.writes:
            catalog.write_files(self.store.db, self.collection.id, self.writes)
            self.writes = []
        if self.touches:
            catalog.touch_files(self.store.db, self.collection.id, self.touches)
            self.touches = []
        self.last_commit = time.perf_counter()

    def _prune(self) -> int:
        # Only local folders are pruned: a bucket listing that failed must not delete anything.
        roots = [os.path.abspath(p) for p in self.options.paths if not is_remote(p)]
        seen = self.feeder.seen
        gone = []
        for file_id, path in catalog.iter_file_paths(self.store.db, self.collection.id):
            seen_it = file_id < len(seen) and seen[file_id]
            # Files first written by this run are not in ``seen`` (their ids came at commit);
            # the existence check keeps them, and anything else still on disk.
            if not seen_it and not os.path.lexists(path) and _under(path, roots):
                gone.append(file_id)
        return catalog.remove_files(self.store.db, self.collection.id, gone)

    def _report_progress(self, force: bool = False) -> None:
        if self.progress is not None:
            self.progress(self.stats)
