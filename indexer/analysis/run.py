"""Tempo, key and loudness for a collection's files: ``indexer analyze`` and ``indexer ingest
--analyze``. Only files without a current analysis are analysed (new, changed, or never done),
so a re-run costs nothing and an interrupted one goes on where it stopped.

    report = analyze_collection(store, "default", workers=2)    # AnalysisReport

One file: ``analyse_file(path)``. Tempo and key come from the file's middle ``EXCERPT_S``
seconds (mono at 22 050 Hz, bounded memory whatever the length); loudness from the whole file,
every channel, at its own sample rate, streamed block by block (BS.1770 sums the channels'
energies, so a mono mix-down would misread a stereo file by up to 3 dB); both through the
decoders ingest uses (libsndfile, then PyAV for m4a/AAC, WMA, video containers).

A file that cannot be analysed gets its error recorded (shown by ``indexer analyze``) and is not
retried until it changes; one whose analysis process dies costs that file, not the run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np

from indexer.analysis.loudness import LoudnessMeter
from indexer.analysis.musical import SAMPLE_RATE, estimate_key, estimate_tempo, librosa_module
from indexer.audio.decode import DEFAULT_LIMITS, DecodeLimits, open_audio, open_blocks
from indexer.ingest.discover import NON_UTF8_PREFIX, is_remote, local_copy, os_path
from indexer.ingest.worker import error_of, non_utf8_alias
from indexer.store.analyses import AnalysisValues, PendingFile, mark_analysed, pending_files, write_analyses
from indexer.store.store import Store

EXCERPT_S = 120.0  # tempo/key from this much of the middle: long sets change key; RAM stays ~10 MB
LOUDNESS_BLOCK_FRAMES = 1 << 16
COMMIT_EVERY = 50


@dataclass
class AnalysisReport:
    collection: str
    analysed: int = 0
    failed: int = 0
    with_tempo: int = 0
    with_key: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, error)


def analyse_file(path: str, limits: DecodeLimits = DEFAULT_LIMITS) -> AnalysisValues:
    """Tempo, key and loudness of one file (a stored path: local, remote or non-UTF-8 named).
    Raises the decoder's typed errors on a file that cannot be read."""
    local: str | None = None
    if path.startswith(NON_UTF8_PREFIX):
        local = non_utf8_alias(os_path(path))
    elif is_remote(path):
        local = local_copy(path)
    try:
        return _analyse(local or path, limits)
    finally:
        if local:
            os.unlink(local)


def _analyse(path: str, limits: DecodeLimits) -> AnalysisValues:
    with open_audio(path, SAMPLE_RATE, limits=limits) as source:  # limits, NaN and damage checked here
        want = int(EXCERPT_S * SAMPLE_RATE)
        start = max(0, (source.num_samples - want) // 2)
        excerpt = source.read(start, start + want)
    tempo, key = estimate_tempo(excerpt), estimate_key(excerpt)
    return AnalysisValues(
        tempo_bpm=tempo.bpm,
        tempo_confidence=tempo.confidence,
        key=key.name,
        key_confidence=key.confidence,
        loudness_lufs=file_loudness(path, limits),
    )


def file_loudness(path: str, limits: DecodeLimits = DEFAULT_LIMITS) -> float | None:
    """Integrated LUFS of every channel at the file's own rate (whichever decoder reads it:
    libsndfile or PyAV), or None for silence, under 400 ms, or samples that are not finite."""
    with open_blocks(path, LOUDNESS_BLOCK_FRAMES, limits=limits) as (info, blocks):
        meter = LoudnessMeter(info.sample_rate, info.channels)
        for block in blocks:
            if not np.isfinite(block).all():
                return None  # open_audio refuses such files first; never average NaN into a number
            meter.feed(block)  # copies: the decoder may reuse the block's buffer
    loudness = meter.integrated()
    return None if loudness is None else round(loudness, 2)


def _analyse_task(path: str, limits: DecodeLimits) -> AnalysisValues:
    """A worker's unit: never raises for a bad file, the error is the result."""
    try:
        return analyse_file(path, limits)
    except Exception as exc:
        code, message = error_of(exc)
        return AnalysisValues(error=f"[{code}] {message}")


def analyze_collection(
    store: Store,
    collection: str,
    *,
    workers: int = 1,
    limits: DecodeLimits = DEFAULT_LIMITS,
    progress: Callable[[AnalysisReport], None] | None = None,
) -> AnalysisReport:
    """Analyse every indexed file of ``collection`` that has no current analysis."""
    librosa_module()  # refuse at once, before any file, when librosa is missing
    target = store.collection(collection)
    report = AnalysisReport(collection)
    started = time.perf_counter()
    done: list[tuple[PendingFile, AnalysisValues]] = []

    def record(pending: PendingFile, values: AnalysisValues) -> None:
        done.append((pending, values))
        if values.error:
            report.failed += 1
            report.failures.append((pending.path, values.error))
        else:
            report.analysed += 1
            report.with_tempo += values.tempo_bpm is not None
            report.with_key += values.key is not None
        if len(done) >= COMMIT_EVERY:
            write_analyses(store.db, done)
            done.clear()
        if progress is not None:
            progress(report)

    with store.lock(collection):
        if workers <= 1:
            for pending in _all_pending(store, target.id):
                record(pending, _analyse_task(pending.path, limits))
        else:
            _in_pool(store, target.id, workers, limits, record)
        write_analyses(store.db, done)
        if report.analysed or report.failed:
            mark_analysed(store.index_dir, collection)
    report.seconds = time.perf_counter() - started
    return report


def _all_pending(store: Store, collection_id: int):
    last = 0
    while page := pending_files(store.db, collection_id, after_id=last):
        yield from page
        last = page[-1].id


def _in_pool(
    store: Store,
    collection_id: int,
    workers: int,
    limits: DecodeLimits,
    record: Callable[[PendingFile, AnalysisValues], None],
) -> None:
    """Analyse in ``workers`` spawned processes (never fork a process holding threads), at most
    two files per worker in flight; a dead worker fails its files and the pool is replaced."""
    context = mp.get_context("spawn")
    files = _all_pending(store, collection_id)
    pool = ProcessPoolExecutor(workers, mp_context=context)
    flying: dict[Future, PendingFile] = {}
    try:
        exhausted = False
        while flying or not exhausted:
            while not exhausted and len(flying) < 2 * workers:
                pending = next(files, None)
                if pending is None:
                    exhausted = True
                    break
                flying[pool.submit(_analyse_task, pending.path, limits)] = pending
            finished, _ = wait(list(flying), return_when=FIRST_COMPLETED)
            for future in finished:
                pending = flying.pop(future)
                try:
                    record(pending, future.result())
                except BrokenProcessPool:
                    record(
                        pending, AnalysisValues(error="[audio.decoder_crashed] the analysis process died on this file")
                    )
            if any(isinstance(f.exception(), BrokenProcessPool) for f in finished):
                # the others in flight are innocent until proven guilty: no row, so the next run retries them
                flying.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = ProcessPoolExecutor(workers, mp_context=context)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
