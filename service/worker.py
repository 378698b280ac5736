"""``clapsearch-worker``: runs the ingest jobs that ``POST /v1/jobs/ingest`` puts in Redis.

    CLAPSEARCH_REDIS_URL=redis://redis:6379/0 clapsearch-worker            # serve forever
    clapsearch-worker --burst                                               # drain, then exit
    clapsearch-worker --watch /library --watch-collection sfx               # and keep a folder in sync

It reads the same ``CLAPSEARCH_*`` settings as the API (database, index folder, model), so it
must see the same storage. By default each job runs in a forked child (RQ's ``Worker``): a job
that crashes or leaks cannot take the worker with it. ``--simple`` runs jobs in-process (RQ's
``SimpleWorker``), for debugging and for platforms without ``fork``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("service.worker")

# Redis read/connect timeout once a stop is requested: RQ's own socket timeout must outlast its
# blocking dequeue (415 s by default), so a Redis that froze or vanished at the moment of a
# SIGTERM would hold the stop bookkeeping (registering the worker's death) for that long.
STOP_REDIS_TIMEOUT_S = 2.0
# An idle worker asked to stop exits by then whatever Redis does (a backstop: the bookkeeping
# is a handful of calls of STOP_REDIS_TIMEOUT_S each).
STOP_DEADLINE_S = 10.0


def _shorten_redis_timeouts(connection, *, busy: bool) -> None:
    """From now on every Redis call of ``connection`` waits at most ``STOP_REDIS_TIMEOUT_S``.

    Connection objects keep the timeouts they were made with, so the pool drops them (closing
    their sockets) and makes new ones with the short timeouts on the next call. While a job runs
    in this process its connection may be mid-command: that socket is left open."""
    pool = connection.connection_pool
    pool.connection_kwargs.update(
        socket_timeout=STOP_REDIS_TIMEOUT_S, socket_connect_timeout=STOP_REDIS_TIMEOUT_S, health_check_interval=0
    )
    try:
        pool.disconnect(inuse_connections=not busy)
    except Exception:  # closing sockets to a dead server may fail; the reset below still applies
        pass
    pool.reset()


def _exit_now(worker_name: str) -> None:
    log.warning("worker %s: Redis did not answer while stopping; exiting without it", worker_name)
    os._exit(1)


def _stops_promptly(worker_class: type[Any]) -> type[Any]:
    """``worker_class`` whose stop request (SIGTERM, SIGINT) bounds the Redis calls that follow.

    A running job still finishes first (RQ's warm shutdown); only the bookkeeping is bounded."""

    class PromptStopWorker(worker_class):
        def request_stop(self, signum, frame):
            busy = self.get_state() == "busy"  # local state: asks Redis nothing
            _shorten_redis_timeouts(self.connection, busy=busy)
            if not busy:
                backstop = threading.Timer(STOP_DEADLINE_S, _exit_now, args=(self.name,))
                backstop.daemon = True
                backstop.start()
            super().request_stop(signum, frame)

    PromptStopWorker.__name__ = worker_class.__name__
    return PromptStopWorker


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clapsearch-worker", description="Run the ingest jobs the API puts in Redis (RQ)."
    )
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--queue", default=None, help="queue name (default: CLAPSEARCH_JOB_QUEUE or clapsearch-ingest)")
    parser.add_argument("--simple", action="store_true", help="run jobs in this process instead of a forked child")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "--watch",
        action="append",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="also keep FOLDER in sync with a collection (repeatable; default: CLAPSEARCH_WATCH_PATHS)",
    )
    parser.add_argument("--watch-collection", default=None, help="collection of the watched folders (default: default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from indexer.logs import quiet_library_loggers
    from service.settings import WorkerSettings

    quiet_library_loggers()
    settings = WorkerSettings()
    if not settings.redis_url:
        print(
            "clapsearch-worker: CLAPSEARCH_REDIS_URL is not set. The worker takes ingest jobs from "
            "Redis; without Redis the API runs ingest jobs itself and needs no worker.",
            file=sys.stderr,
        )
        sys.exit(2)

    from rq import SimpleWorker, Worker

    import service.jobs  # noqa: F401  (fail now, not on the first job, if the job code is broken)
    from service.cache import redact_url, redis_client, redis_errors

    # No read timeout of ours: RQ sets one that outlasts its blocking dequeue (minutes); a stop
    # request shortens it (_stops_promptly), so SIGTERM ends an idle worker within seconds.
    connection = redis_client(
        settings.redis_url,
        connect_timeout_s=max(settings.redis_timeout_s, 5.0),
        read_timeout_s=None,
        health_check_interval=30,
    )
    where = redact_url(settings.redis_url)
    try:
        connection.ping()
    except Exception as exc:
        print(f"clapsearch-worker: Redis at {where} is not reachable: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        sys.exit(1)

    queue = args.queue or settings.job_queue
    worker_class = _stops_promptly(SimpleWorker if args.simple else Worker)
    log.info(
        "%s on queue %r at %s (home %s, model %s)%s",
        worker_class.__name__,
        queue,
        where,
        settings.home,
        settings.model or "default",
        ", burst" if args.burst else "",
    )
    worker = worker_class([queue], connection=connection)
    watcher = None
    watched = args.watch if args.watch is not None else settings.watch_paths
    if watched:
        from service.watching import check_folders, start_watcher

        collection = args.watch_collection or settings.watch_collection
        watcher = start_watcher(settings.model_dump_json(), check_folders(watched), collection)
    try:
        worker.work(burst=args.burst, logging_level=args.log_level)
    except redis_errors() as exc:  # Redis went away while the worker stopped: it stops anyway
        log.warning("stopped without telling Redis at %s: %s: %s", where, exc.__class__.__name__, exc)
        return 1
    finally:
        if watcher is not None:
            from service.watching import stop_watcher

            stop_watcher(watcher)
    return 0


if __name__ == "__main__":
    sys.exit(main())
