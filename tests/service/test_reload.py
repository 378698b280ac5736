"""Index reload signals: a Redis notice reaches every watcher with its collection, and polling
goes on with no Redis, a dead Redis, or an on_change that raises."""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager

import pytest

from service.reload import IndexWatcher, notify_published
from service.settings import ServiceSettings
from tests.helpers import wait_until

DEAD = "redis://127.0.0.1:1/0"


def _settings(**kw) -> ServiceSettings:
    kw.setdefault("redis_url", None)
    return ServiceSettings(redis_timeout_s=0.5, **kw)


def _stopped_quickly(watcher: IndexWatcher) -> None:
    started = time.monotonic()
    watcher.stop()
    assert time.monotonic() - started < 1.6
    assert not watcher._threads and not watcher.status()["subscribed"]


@contextmanager
def _watching(settings: ServiceSettings, on_change=None):
    """(a started watcher, the collections it reported to the default ``on_change``); the watcher
    must stop quickly afterwards."""
    seen: list = []
    watcher = IndexWatcher(settings, on_change or seen.append)
    watcher.start()
    try:
        yield watcher, seen
    finally:
        _stopped_quickly(watcher)


@pytest.mark.needs_redis
def test_notice_reaches_watcher_with_collection(redis_url):
    settings = _settings(redis_url=redis_url, reload_poll_s=60)
    with _watching(settings) as (watcher, seen):
        assert wait_until(lambda: watcher.status()["subscribed"])
        name = f"sfx-{uuid.uuid4().hex[:8]}"
        assert notify_published(settings, name) is True
        assert wait_until(lambda: name in seen)
        status = watcher.status()
        assert status["notices"] >= 1 and status["polls"] == 0 and status["last_error"] is None


def test_polls_without_redis():
    settings = _settings(reload_poll_s=0.05)
    with _watching(settings) as (watcher, seen):
        assert wait_until(lambda: watcher.status()["polls"] >= 3)
        assert set(seen) == {None}
        assert not watcher.status()["subscribed"]
        assert notify_published(settings, "default") is False


def test_dead_redis_does_not_stop_polling():
    settings = _settings(redis_url=DEAD, reload_poll_s=0.05)
    with _watching(settings) as (watcher, _):
        assert wait_until(lambda: watcher.status()["polls"] >= 3 and watcher.status()["last_error"])
        status = watcher.status()
        assert not status["subscribed"] and "Connection" in status["last_error"]
        assert notify_published(settings, "default") is False


def test_on_change_errors_are_logged_not_fatal():
    calls = []

    def broken(collection):
        calls.append(collection)
        raise RuntimeError("reload exploded")

    with _watching(_settings(reload_poll_s=0.05), broken):
        assert wait_until(lambda: len(calls) >= 3)


class _Proxy:
    """A TCP forwarder to the real Redis that can appear late: a Redis that comes back."""

    def __init__(self, target: tuple[str, int]):
        import socket

        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()  # nothing listens here until start()
        self.server = None

    def start(self) -> None:
        import socket
        import threading

        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", self.port))
        self.server.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.needs_redis
def test_watcher_resubscribes_when_redis_comes_back(redis_url):
    from urllib.parse import urlsplit

    parts = urlsplit(redis_url)
    proxy = _Proxy((parts.hostname, parts.port or 6379))
    settings = _settings(redis_url=f"redis://127.0.0.1:{proxy.port}{parts.path}", reload_poll_s=60)
    seen: list = []
    watcher = IndexWatcher(settings, seen.append)
    watcher.start()
    try:
        assert wait_until(lambda: watcher.status()["last_error"] is not None)
        proxy.start()  # Redis is back
        assert wait_until(lambda: watcher.status()["subscribed"])
        assert wait_until(lambda: None in seen)  # one catch-up check for lost notices
        assert watcher.status()["last_error"] is None
        name = f"back-{uuid.uuid4().hex[:8]}"
        assert notify_published(settings, name)
        assert wait_until(lambda: name in seen)
    finally:
        _stopped_quickly(watcher)
        proxy.close()
