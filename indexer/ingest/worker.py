"""Decode worker processes: file -> content hash, metadata, model input views (and segment
windows), sent to the main process as the typed messages below. They never load a model.
Ray actors run the same ``process_file``, so both modes record the same rows and error codes.

Every message is small (at most ``SEGMENT_CHUNK`` views), and the queue is bounded, so a
4-hour recording flows through in pieces and memory stays flat whatever the file length.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.queues import Queue
from typing import Any

import numpy as np

from indexer.audio.clip import ClipViews
from indexer.audio.decode import DecodeLimits, open_audio
from indexer.audio.views import reader_views
from indexer.ingest.discover import NON_UTF8_PREFIX, is_remote, local_copy, os_path, printable
from indexer.ingest.metadata import read_tags
from indexer.models.manifest import AudioFrontend, sha256_file
from indexer.store.catalog import FileRecord, SegmentSpec

SEGMENT_CHUNK = 16


@dataclass(frozen=True)
class DecodeTask:
    task_id: int
    path: str
    size: int
    mtime_ns: int
    known_hash: str | None = None  # set when only the mtime changed: confirm by content


@dataclass(frozen=True)
class Started:  # a worker took a task: a hung or dead worker is blamed on its file
    worker_id: int
    task_id: int


@dataclass(frozen=True)
class Unchanged:  # same bytes as the database row: nothing decoded
    task_id: int
    content_hash: str


@dataclass(frozen=True)
class Meta:
    task_id: int
    fields: dict[str, Any]  # content_hash, duration_s, format, subtype, sample_rate, channels, tags


@dataclass(frozen=True)
class Views:
    task_id: int
    kind: str  # "file" (one view) or "segments" (one per window, spans in s)
    features: np.ndarray
    is_longer: np.ndarray
    spans: list[tuple[float, float]] | None


@dataclass(frozen=True)
class Done:
    task_id: int


@dataclass(frozen=True)
class Failed:
    task_id: int
    code: str
    message: str


Message = Started | Unchanged | Meta | Views | Done | Failed
Sink = Callable[[Message], Any]


@dataclass
class FileResult:
    """One file's messages gathered into one row: its metadata, then its whole-file and segment
    vectors as the embedder returns them (both ingest modes batch views across files)."""

    path: str
    size: int
    mtime_ns: int
    meta: dict[str, Any] | None = None
    vector: np.ndarray | None = None
    spans: list[tuple[float, float]] = field(default_factory=list)
    seg_vectors: list[np.ndarray | None] = field(default_factory=list)
    error: tuple[str, str] | None = None  # (code, message): the file is recorded as failed

    def take(self, message: Message) -> list[tuple[int | None, ClipViews]]:
        """Keep a ``Meta``'s fields; return a ``Views``' model inputs, each with the slot its
        vector goes to (``set_vector``: None is the whole file, else a segment's index)."""
        if isinstance(message, Meta):
            self.meta = message.fields
        if not isinstance(message, Views):
            return []
        out: list[tuple[int | None, ClipViews]] = []
        for i in range(len(message.features)):
            slot = None
            if message.kind == "segments":
                assert message.spans is not None, "segment views carry their spans"
                slot = len(self.spans)
                self.spans.append(message.spans[i])
                self.seg_vectors.append(None)
            out.append((slot, ClipViews(message.features[i], bool(message.is_longer[i]))))
        return out

    def set_vector(self, slot: int | None, vector: np.ndarray) -> None:
        if slot is None:
            self.vector = vector
        else:
            self.seg_vectors[slot] = vector

    def record(self) -> FileRecord:
        if self.error is not None:
            return FileRecord(
                self.path,
                self.size,
                self.mtime_ns,
                content_hash=(self.meta or {}).get("content_hash"),
                error_code=self.error[0],
                error=self.error[1],
            )
        segments: list[tuple[float, float, np.ndarray]] = []
        for (a, b), v in zip(self.spans, self.seg_vectors):
            assert v is not None, "a file is recorded only once all its views are embedded"
            segments.append((a, b, v))
        return FileRecord(
            self.path, self.size, self.mtime_ns, vector=self.vector, segments=segments or None, **(self.meta or {})
        )


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Window starts covering the whole waveform: every ``hop`` samples, plus one window flush
    with the end when the regular grid stops short of it."""
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return starts


def process_file(
    task: DecodeTask, put: Sink, spec: AudioFrontend, limits: DecodeLimits, segments: SegmentSpec | None
) -> None:
    """Hash, read tags, decode and cut views of ``task.path`` (a local path, or a remote URL
    through a temporary copy), handing each message to ``put``. Raises on a bad file: the
    caller turns the exception into a ``Failed`` row with ``error_of``."""
    local: str | None
    if task.path.startswith(NON_UTF8_PREFIX):
        local = non_utf8_alias(os_path(task.path))
    else:
        local = local_copy(task.path) if is_remote(task.path) else None
    try:
        _process(replace(task, path=local) if local else task, put, spec, limits, segments)
    finally:
        if local:
            os.unlink(local)


def non_utf8_alias(path: str) -> str:
    """A temporary UTF-8-named symlink to a file whose name is not UTF-8 (``discover.stored_path``):
    libsndfile and mutagen take str names and fail on lone surrogates; the caller deletes it."""
    import tempfile
    import uuid

    suffix = os.path.splitext(printable(path))[1]
    while True:
        alias = os.path.join(tempfile.gettempdir(), f"clapsearch-name-{uuid.uuid4().hex}{suffix}")
        try:
            os.symlink(os.fsencode(path), alias)  # fails rather than reuse a name that exists
            return alias
        except FileExistsError:
            continue


def _process(
    task: DecodeTask, put: Sink, spec: AudioFrontend, limits: DecodeLimits, segments: SegmentSpec | None
) -> None:
    digest = sha256_file(task.path)
    if task.known_hash is not None and digest == task.known_hash:
        put(Unchanged(task.task_id, digest))
        return
    with open_audio(task.path, spec.sample_rate, limits=limits) as source:
        info = source.info
        n = source.num_samples
        put(
            Meta(
                task.task_id,
                dict(
                    content_hash=digest,
                    duration_s=n / spec.sample_rate,
                    format=info.format if info else None,
                    subtype=info.subtype if info else None,
                    sample_rate=info.sample_rate if info else None,
                    channels=info.channels if info else None,
                    tags=read_tags(task.path) or None,
                ),
            )
        )
        whole = reader_views(source.view, n, spec)
        put(Views(task.task_id, "file", whole.features[None], np.array([whole.is_longer]), None))
        if segments is not None and n > int(segments.seconds * spec.sample_rate):
            window = int(round(segments.seconds * spec.sample_rate))
            hop = int(round(segments.hop * spec.sample_rate))
            starts = window_starts(n, window, hop)
            for i in range(0, len(starts), SEGMENT_CHUNK):
                feats, longer, spans = [], [], []
                for s0 in starts[i : i + SEGMENT_CHUNK]:
                    length = min(window, n - s0)
                    views = reader_views(
                        lambda a, b, s0=s0, length=length: source.read(s0 + a, s0 + min(b, length)), length, spec
                    )
                    feats.append(views.features)
                    longer.append(views.is_longer)
                    spans.append((s0 / spec.sample_rate, (s0 + length) / spec.sample_rate))
                put(Views(task.task_id, "segments", np.stack(feats), np.array(longer), spans))
        put(Done(task.task_id))


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_WATCH_EVERY_S = 0.5


def die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` (the ingest that spawned it) dies.

    A decode worker blocks on its task queue forever once its parent is gone (it holds a write
    end of that queue itself, so it never sees end-of-file): when the OOM killer takes only the
    ingest's main process, its workers would linger for minutes holding memory. On Linux the
    kernel sends SIGKILL at the parent's death (``PR_SET_PDEATHSIG``; it fires when the spawning
    *thread* ends, and ingest keeps the thread that starts workers alive until they are stopped).
    Elsewhere, or if prctl is unavailable, a watchdog thread notices the re-parenting.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    # The parent may have died before the signal was armed: we were re-parented already.
    if os.getppid() != parent_pid:
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(_WATCH_EVERY_S)
    os._exit(1)  # nobody reads our results any more; no cleanup worth waiting for


def worker_main(
    worker_id: int, tasks: Queue, results: Queue, spec_json: dict, limits: DecodeLimits, segments: SegmentSpec | None
) -> None:
    """Loop: take a task, process it, report; ``None`` ends the loop."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import mutagen  # noqa: F401  (warm up once, so a task's time is the file's, not first-import time)

    spec = AudioFrontend.model_validate(spec_json)
    while True:
        task = tasks.get()
        if task is None:
            return
        results.put(Started(worker_id, task.task_id))
        try:
            process_file(task, results.put, spec, limits, segments)
        except Exception as exc:  # a decoder bug must cost one file, never the run
            results.put(Failed(task.task_id, *error_of(exc)))


def error_of(exc: Exception) -> tuple[str, str]:
    """(error_code, message) recorded for a file whose processing raised ``exc``."""
    from indexer import errors

    # messages are stored and sent as JSON: a name that is not UTF-8 must not make them unwritable
    if isinstance(exc, errors.AudioError):
        return exc.code, printable(exc.reason)
    if isinstance(exc, FileNotFoundError):
        return errors.FileMissingError.code, printable(f"vanished during ingest: {exc}")
    if isinstance(exc, PermissionError):
        return errors.FilePermissionError.code, printable(str(exc))
    if isinstance(exc, MemoryError):
        return errors.AudioTooLargeError.code, "ran out of memory decoding it"
    return errors.AudioDecodeError.code, printable(f"{exc.__class__.__name__}: {exc}")
