"""Folder watching beside ``clapsearch-worker``: ``clapsearch-worker --watch /library``.

The worker's own jobs come from Redis; a watched folder needs nobody to submit anything, so it
runs the indexer's watcher (``indexer.ingest.watch``: one catch-up ingest, then an incremental
ingest of each folder once its changes settle) next to the job loop. It runs in its own process,
started with ``spawn``: RQ forks a child per job, and forking a process that has a watcher
thread mid-ingest (holding the database's or the logger's locks) could leave the child stuck.
The process stops with the worker: SIGTERM on the worker's exit, and the decode workers' own
parent-death guard (``indexer.ingest.worker.die_with_parent``) when the worker is killed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from pathlib import Path

log = logging.getLogger("service.watching")
STOP_WAIT_S = 15.0  # a sync in progress finishes its current batch, then the watcher exits


def check_folders(paths: list[Path]) -> list[str]:
    """Absolute paths of ``paths``, or SystemExit naming the first that is not a folder."""
    folders = []
    for path in paths:
        if not path.is_dir():
            print(f"clapsearch-worker: --watch {path}: not a folder", file=sys.stderr)
            sys.exit(2)
        folders.append(str(path.resolve()))
    return folders


def start_watcher(settings_json: str, folders: list[str], collection: str) -> multiprocessing.process.BaseProcess:
    # Not a daemon process: its ingests start decode processes of their own, which daemons may not.
    process = multiprocessing.get_context("spawn").Process(
        target=_watch, args=(settings_json, folders, collection, os.getpid()), name="clapsearch-watch"
    )
    process.start()
    log.info("watching %s for collection %r (pid %s)", ", ".join(folders), collection, process.pid)
    return process


def stop_watcher(process: multiprocessing.process.BaseProcess) -> None:
    if process.is_alive():
        process.terminate()  # SIGTERM: the watcher stops after the batch it is writing
        process.join(STOP_WAIT_S)
    if process.is_alive():
        log.warning("folder watcher did not stop within %.0f s; killing it", STOP_WAIT_S)
        process.kill()
        process.join(5)


def _watch(settings_json: str, folders: list[str], collection: str, worker_pid: int) -> None:
    from indexer.ingest.report import IngestOptions
    from indexer.ingest.watch import watch_collection
    from indexer.ingest.worker import die_with_parent
    from indexer.logs import quiet_library_loggers
    from indexer.store.store import Store
    from service.settings import WorkerSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_library_loggers()
    die_with_parent(worker_pid)  # the decode workers' guard: a killed worker takes its watcher along
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = WorkerSettings.model_validate_json(settings_json)
    store = Store.open(settings)
    try:

        def synced(report) -> None:
            s = report.stats
            log.info("synced %s: %d embedded, %d unchanged, %d failed", collection, s.embedded, s.skipped, s.failed)

        watch_collection(store, IngestOptions(paths=folders, collection=collection), stop=stop, on_sync=synced)
    finally:
        store.close()
