"""Decode worker processes: file -> content hash, metadata, model input views (and segment
windows), sent to the main process as messages. They never load a model.

Messages put on the results queue (plain tuples, cheap to pickle):
    ("start", worker_id, task_id)                       took a task
    ("unchanged", task_id, content_hash)               same bytes as the database row: no decode
    ("meta", task_id, dict)                             hash, duration, format, channels, tags
    ("views", task_id, kind, features, is_longer, spans)   kind "file" (one view) or "segments"
    ("done", task_id, n_segments)
    ("error", task_id, code, message)
Every message is small (at most ``SEGMENT_CHUNK`` views), and the queue is bounded, so a
4-hour recording flows through in pieces and memory stays flat whatever the file length.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace

import numpy as np

SEGMENT_CHUNK = 16
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class DecodeTask:
    task_id: int
    path: str
    size: int
    mtime_ns: int
    known_hash: str | None = None     # set when only the mtime changed: confirm by content


def content_hash(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Window starts covering the whole waveform: every ``hop`` samples, plus one window flush
    with the end when the regular grid stops short of it."""
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return starts


def local_copy(url: str) -> str:
    """Copy a remote file to a temporary local file (the decoder seeks); the caller deletes it."""
    import shutil
    import tempfile

    import fsspec

    suffix = os.path.splitext(url.split("::", 1)[0])[1]
    fd, tmp = tempfile.mkstemp(prefix="clapsearch-fetch-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out, fsspec.open(url, "rb") as source:
            shutil.copyfileobj(source, out, _HASH_BLOCK)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _process_any(task: DecodeTask, results, spec, limits, segments) -> None:
    """``_process`` for a local path or, through a temporary copy, a remote URL."""
    from indexer.ingest.discover import is_remote

    if not is_remote(task.path):
        return _process(task, results, spec, limits, segments)
    local = local_copy(task.path)
    try:
        _process(replace(task, path=local), results, spec, limits, segments)
    finally:
        os.unlink(local)


def _process(task: DecodeTask, results, spec, limits, segments) -> None:
    from indexer.audio.decode import open_audio
    from indexer.audio.views import reader_views
    from indexer.ingest.metadata import read_tags

    digest = content_hash(task.path)
    if task.known_hash is not None and digest == task.known_hash:
        results.put(("unchanged", task.task_id, digest))
        return
    with open_audio(task.path, spec.sample_rate, limits=limits) as source:
        info = source.info
        n = source.num_samples
        results.put(("meta", task.task_id, dict(
            content_hash=digest, duration_s=n / spec.sample_rate,
            format=info.format if info else None, subtype=info.subtype if info else None,
            sample_rate=info.sample_rate if info else None, channels=info.channels if info else None,
            tags=read_tags(task.path) or None)))
        whole = reader_views(source.read, n, spec)
        results.put(("views", task.task_id, "file", whole.features[None],
                     np.array([whole.is_longer]), None))
        n_segments = 0
        if segments is not None and n > int(segments.seconds * spec.sample_rate):
            window = int(round(segments.seconds * spec.sample_rate))
            hop = int(round(segments.hop * spec.sample_rate))
            starts = window_starts(n, window, hop)
            for i in range(0, len(starts), SEGMENT_CHUNK):
                feats, longer, spans = [], [], []
                for s0 in starts[i : i + SEGMENT_CHUNK]:
                    length = min(window, n - s0)
                    views = reader_views(lambda a, b, s0=s0, length=length: source.read(s0 + a, s0 + min(b, length)),
                                         length, spec)
                    feats.append(views.features)
                    longer.append(views.is_longer)
                    spans.append((s0 / spec.sample_rate, (s0 + length) / spec.sample_rate))
                results.put(("views", task.task_id, "segments", np.stack(feats), np.array(longer), spans))
                n_segments += len(spans)
        results.put(("done", task.task_id, n_segments))


def worker_main(worker_id: int, tasks, results, spec_json: dict, limits, segments) -> None:
    """Loop: take a task, process it, report; ``None`` ends the loop."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from indexer.models.manifest import AudioFrontend

    import indexer.audio.decode, indexer.audio.views, indexer.ingest.metadata  # noqa: E401,F401  warm up once
    import mutagen  # noqa: F401  (so a task's time is the file's, not first-import time)

    spec = AudioFrontend.model_validate(spec_json)
    while True:
        task = tasks.get()
        if task is None:
            return
        results.put(("start", worker_id, task.task_id))
        try:
            _process_any(task, results, spec, limits, segments)
        except Exception as exc:  # a decoder bug must cost one file, never the run
            results.put(("error", task.task_id, *error_of(exc)))


def error_of(exc: Exception) -> tuple[str, str]:
    """(error_code, message) recorded for a file whose processing raised ``exc``."""
    from indexer.errors import AudioError

    if isinstance(exc, AudioError):
        return exc.code, exc.reason
    if isinstance(exc, FileNotFoundError):
        return "file.missing", f"vanished during ingest: {exc}"
    if isinstance(exc, PermissionError):
        return "file.permission", str(exc)
    if isinstance(exc, MemoryError):
        return "audio.too_large", "ran out of memory decoding it"
    return "audio.decode", f"{exc.__class__.__name__}: {exc}"
