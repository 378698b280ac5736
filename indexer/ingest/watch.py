"""Keep a collection in sync with folders: ``indexer watch ./library``.

The watcher holds no state of its own. It starts with one incremental ingest (with prune) of
the watched folders, which catches up on whatever changed while nothing was watching, so a
restart loses nothing. Then it waits for the file system's change events (``watchfiles``:
inotify, FSEvents or ReadDirectoryChangesW, polling where none works) and runs the same
incremental ingest for the folders that changed, once they have been quiet for ``quiet_s``: a
copy of 500 files, or one file still being written, becomes one ingest, not 500. The ingest
skips unchanged files by size and mtime and forgets files that are gone, so an event that
arrives twice, or late, does no harm.

A collection another process is ingesting (``CollectionBusyError``) is retried after the next
quiet period; the changed folders wait in the meantime.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.errors import CollectionBusyError, ConfigError
from indexer.ingest.pipeline import run_ingest
from indexer.ingest.report import IngestOptions, IngestReport

if TYPE_CHECKING:
    from indexer.store.store import Store

log = logging.getLogger("indexer.watch")
WAKE_MS = 200  # the OS watcher wakes this often when nothing happens (how the listener says it is ready)
READY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class WatchOptions:
    quiet_s: float = 2.0  # a folder is synced once no change has come for this long
    max_wait_s: float = 30.0  # ... or at the latest this long after its first change
    force_polling: bool = False  # network file systems send no events: poll instead


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def changed_folders(changes: Iterable[tuple[object, str]], roots: list[str], extensions: tuple[str, ...]) -> list[str]:
    """The folders to sync for a batch of change events: the nearest existing folder above each
    audio file (or folder) that appeared, changed or went away, inside the watched roots; a
    folder already covered by another in the list is left out (ingest walks recursively)."""
    wanted = {e.lower() for e in extensions}
    folders: set[str] = set()
    for _change, path in changes:
        suffix = os.path.splitext(path)[1].lower()
        if suffix and suffix not in wanted:
            continue  # a sidecar, a temp file or a partial download: not ours
        folder = os.path.dirname(os.path.abspath(path))
        root = next((r for r in roots if _inside(folder, r)), None)
        if root is None:
            continue
        while folder != root and not os.path.isdir(folder):  # a folder that went away as a whole
            folder = os.path.dirname(folder)
        folders.add(folder)
    ordered = sorted(folders)
    return [f for f in ordered if not any(f != p and _inside(f, p) for p in ordered)]


def watch_collection(
    store: Store,
    options: IngestOptions,
    watch: WatchOptions = WatchOptions(),
    *,
    stop: threading.Event | None = None,
    on_sync: Callable[[IngestReport], None] | None = None,
) -> None:
    """Sync ``options.paths`` into ``options.collection`` until ``stop`` is set (or Ctrl-C)."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ConfigError("indexer watch needs the 'watch' extra: pip install 'clapsearch[watch]'") from None
    roots = [os.path.abspath(p) for p in options.paths]
    for root in roots:
        if not Path(root).is_dir():
            raise NotADirectoryError(f"{root}: watch needs folders")
    options = replace(options, paths=roots, prune=True)
    stop = stop or threading.Event()
    batches: queue.Queue[set] = queue.Queue()
    ready = threading.Event()
    listener = threading.Thread(target=_listen, args=(roots, watch, stop, ready, batches), daemon=True)
    listener.start()
    # Listen first, then catch up: a file that lands during the first sync is an event, not a miss.
    ready.wait(READY_TIMEOUT_S)
    pending = set(roots)
    try:
        while not stop.is_set():
            if pending:
                pending = _sync(store, options, sorted(pending), on_sync)
            try:
                batch = batches.get(timeout=watch.quiet_s)
            except queue.Empty:
                continue  # nothing new: retry a busy collection, or look at ``stop`` again
            pending |= set(changed_folders(batch, roots, options.extensions))
    finally:
        stop.set()
        listener.join(READY_TIMEOUT_S)


def _listen(
    roots: list[str], watch: WatchOptions, stop: threading.Event, ready: threading.Event, out: queue.Queue
) -> None:
    """Change events into ``out``; ``ready`` once the OS watcher is in place (its first wake-up)."""
    import watchfiles  # checked by watch_collection

    for batch in watchfiles.watch(
        *roots,
        debounce=int(watch.max_wait_s * 1000),
        step=int(watch.quiet_s * 1000),
        stop_event=stop,
        yield_on_timeout=True,
        rust_timeout=WAKE_MS,
        force_polling=watch.force_polling or None,
        raise_interrupt=False,
    ):
        ready.set()
        if batch:
            out.put(batch)
    ready.set()


def _sync(
    store: Store, options: IngestOptions, folders: list[str], on_sync: Callable[[IngestReport], None] | None
) -> set[str]:
    """Ingest ``folders``; the folders still to do (all of them when the collection was busy)."""
    try:
        report = run_ingest(store, replace(options, paths=folders))
    except CollectionBusyError as exc:
        log.info("collection busy, retrying after the next quiet period: %s", exc)
        return set(folders)
    if on_sync is not None:
        on_sync(report)
    return set()
