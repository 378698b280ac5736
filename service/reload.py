"""How API replicas learn that an ingest published a new index version, without a restart.

Two signals, because neither alone is enough:

* a Redis pub/sub notice (:func:`notify_published`, sent by whoever published) makes every
  replica look within milliseconds;
* a poll every ``settings.reload_poll_s`` catches everything else: no Redis configured, Redis
  down, a notice lost while a subscriber was reconnecting, or an ``indexer ingest`` run from a
  shell that never sends notices. Index versions live on shared storage behind an atomic
  ``CURRENT`` pointer, so checking is a cheap file read (``Searcher.reload_if_changed``).

The watcher only says *when* to check; the runtime's ``on_change`` decides what to reload.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from service.cache import redact_url, redis_client

if TYPE_CHECKING:
    from service.settings import ServiceSettings

log = logging.getLogger("service.reload")

CHANNEL = "clapsearch:index-published"

_BACKOFF_MIN_S, _BACKOFF_MAX_S = 0.5, 30.0
_LISTEN_TICK_S = 0.5  # how long one get_message waits: bounds how fast stop() returns


def notify_published(settings: ServiceSettings, collection: str) -> bool:
    """PUBLISH a JSON notice that ``collection`` has a new index version.

    Returns False (and logs) when Redis is unset or unreachable: replicas then find the
    version on their next poll, so a failed notice only delays, never loses, a reload.
    """
    if not settings.redis_url:
        log.info("index of %r published; no Redis configured, replicas will notice by polling", collection)
        return False
    notice = json.dumps(
        {
            "collection": collection,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "at": datetime.now(timezone.utc).isoformat(),
        }
    )
    client = None
    try:
        client = redis_client(
            settings.redis_url,
            connect_timeout_s=settings.redis_timeout_s,
            read_timeout_s=max(settings.redis_timeout_s, 1.0),
        )
        receivers = client.publish(CHANNEL, notice)
    except Exception as exc:
        log.warning(
            "could not notify replicas that %r was published (Redis %s: %s: %s); they will notice by polling",
            collection,
            redact_url(settings.redis_url),
            exc.__class__.__name__,
            exc,
        )
        return False
    finally:
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
    log.info("notified %d subscriber(s) that %r was published", receivers, collection)
    return True


class IndexWatcher:
    """Tells the runtime to check for newly published index versions: on each Redis notice
    (pub/sub, reconnecting with backoff when Redis is down) and every settings.reload_poll_s
    regardless (shared-storage polling: works with no Redis at all).

    ``on_change`` receives the collection named by a notice, or None on a poll tick (check
    everything). Calls are serialised, so ``on_change`` needs no locking of its own; whatever it
    raises is logged and the watcher carries on.
    """

    def __init__(self, settings: ServiceSettings, on_change: Callable[[str | None], None]):
        self.settings = settings
        self.on_change = on_change
        self._stop = threading.Event()
        self._call_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pubsub = None
        self.subscribed = False
        self.notices = 0
        self.polls = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        self._threads = [threading.Thread(target=self._poll_loop, name="index-watch-poll", daemon=True)]
        if self.settings.redis_url:
            self._threads.append(threading.Thread(target=self._listen_loop, name="index-watch-redis", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop both threads; returns within about a second (unless on_change is mid-call)."""
        self._stop.set()
        deadline = time.monotonic() + 1.5
        for thread in self._threads:
            thread.join(timeout=max(0.05, deadline - time.monotonic()))
        self._threads = []
        self.subscribed = False

    def status(self) -> dict:
        return {
            "subscribed": self.subscribed,
            "notices": self.notices,
            "polls": self.polls,
            "last_error": self.last_error,
        }

    # ------------------------------------------------------------------ loops
    def _call(self, collection: str | None) -> None:
        with self._call_lock:
            try:
                self.on_change(collection)
            except Exception:
                log.exception("index reload check failed (collection %r)", collection)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.settings.reload_poll_s):
            self.polls += 1
            self._call(None)

    def _listen_loop(self) -> None:
        backoff = _BACKOFF_MIN_S
        had_error = False
        while not self._stop.is_set():
            client = pubsub = None
            try:
                timeout = self.settings.redis_timeout_s
                assert self.settings.redis_url is not None, "start() listens only with a Redis URL"
                # reads wait for messages, so the read timeout must outlast one listening tick;
                # the health check PINGs an idle connection so a silently dead one is noticed
                client = redis_client(
                    self.settings.redis_url,
                    connect_timeout_s=timeout,
                    read_timeout_s=max(timeout, _LISTEN_TICK_S) + 5.0,
                    health_check_interval=10,
                )
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                self.subscribed = True
                if had_error:
                    log.warning("index notices from Redis %s resumed", redact_url(self.settings.redis_url))
                    self.last_error = None
                    had_error = False
                    self._call(None)  # notices sent while we were away are lost: look once
                backoff = _BACKOFF_MIN_S
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=_LISTEN_TICK_S)
                    if message is not None and message.get("type") == "message":
                        self._on_notice(message.get("data"))
            except Exception as exc:
                self.subscribed = False
                self.last_error = f"{exc.__class__.__name__}: {exc}"
                if not had_error:
                    log.warning(
                        "index notices from Redis %s unavailable (%s); polling every %.1f s, reconnecting with backoff",
                        redact_url(self.settings.redis_url),
                        self.last_error,
                        self.settings.reload_poll_s,
                    )
                had_error = True
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
            finally:
                self.subscribed = False
                for closable in (pubsub, client):
                    if closable is not None:
                        try:
                            closable.close()
                        except Exception:
                            pass

    def _on_notice(self, data) -> None:
        try:
            notice = json.loads(data)
            collection = notice.get("collection") if isinstance(notice, dict) else None
            collection = collection if isinstance(collection, str) else None
        except (TypeError, ValueError):
            log.warning("ignoring a malformed index notice: %r", data)
            return
        self.notices += 1
        self._call(collection)
