"""A Redis byte cache for embeddings and result pages that can never fail a request.

Redis is an optimisation here, not a dependency: with no URL configured every lookup is a
miss, and when the server is down (refused, timed out, restarting) the cache logs one warning,
answers misses for ``retry_after_s`` without touching the network (a circuit breaker, so a dead
Redis costs at most one short timeout per ``retry_after_s``, not one per request), then tries
again. Values are opaque bytes; callers own the encoding.

Also home to the small helpers the other Redis users of the service share (:func:`redis_client`,
:func:`redact_url`), so all of them get the same short timeouts and no silent retries.

Nothing connects at import or construction time: the client is created on first use.

In front of Redis sits :class:`VectorLRU`, an in-process LRU of text vectors: tagging sends the
same candidate labels again and again, and re-embedding 50 labels costs more than the audio
(issue 18: 174 of 274 ms per ``/classify``). Redis stays the layer replicas share.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import numpy as np
    import redis

log = logging.getLogger("service.cache")

# how often status() may PING: readiness probes can call it as often as they like
_STATUS_EVERY_S = 1.0


def redact_url(url: str | None) -> str:
    """The URL without its password, for logs and status pages."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        user = parts.username or ""
        return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparseable redis url>"


def redis_client(url: str, *, connect_timeout_s: float, read_timeout_s: float | None, health_check_interval: int = 0):
    """A ``redis.Redis`` with explicit timeouts and no automatic retries.

    redis-py retries failed commands 3 times by default; for a request path that multiplies
    the cost of a dead server, and our callers already decide what a failure means.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout_s,
        socket_timeout=read_timeout_s,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=health_check_interval,
    )


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a Redis call raises when the server is unusable (imported lazily, like redis)."""
    import redis

    return (redis.RedisError, OSError)


class Cache:
    """Redis-backed byte cache that never fails a request: a miss when disabled or down."""

    def __init__(
        self, redis_url: str | None, *, timeout_s: float = 0.25, retry_after_s: float = 2.0, prefix: str = "clapsearch:"
    ):
        self.url = redis_url or None
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.prefix = prefix
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()
        self._down_until = 0.0  # monotonic time before which Redis is not tried
        self._down = False  # inside an outage (warned once, not again)
        self._last_error: str | None = None
        self._status: dict | None = None
        self._status_at = float("-inf")

    @property
    def enabled(self) -> bool:
        """A URL was configured (whether or not the server answers right now)."""
        return self.url is not None

    # ------------------------------------------------------------------ plumbing
    def _redis(self):
        """The client, or None while disabled or inside the breaker's quiet period."""
        if self.url is None or time.monotonic() < self._down_until:
            return None
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = redis_client(
                        self.url, connect_timeout_s=self.timeout_s, read_timeout_s=self.timeout_s
                    )
        return self._client

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self._down_until = time.monotonic() + self.retry_after_s
            self._last_error = f"{exc.__class__.__name__}: {exc}"
            first = not self._down
            self._down = True
        if first:
            log.warning(
                "Redis cache at %s unusable (%s); serving without cache, retrying every %.1f s",
                redact_url(self.url),
                self._last_error,
                self.retry_after_s,
            )

    def _worked(self) -> None:
        if self._down:
            with self._lock:
                was_down, self._down = self._down, False
            if was_down:
                log.warning("Redis cache at %s is back", redact_url(self.url))

    def _key(self, key: str) -> str:
        return self.prefix + key

    # ------------------------------------------------------------------ API
    def get(self, key: str) -> bytes | None:
        client = self._redis()
        if client is None:
            return None
        try:
            value = client.get(self._key(key))
        except Exception as exc:  # never fail a request on the cache: anything is a miss
            self._failed(exc)
            return None
        self._worked()
        return value

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Look up all ``keys`` in one MGET round trip; misses (or a down Redis) are None."""
        if not keys:
            return []
        client = self._redis()
        if client is None:
            return [None] * len(keys)
        try:
            values = client.mget([self._key(k) for k in keys])
        except Exception as exc:
            self._failed(exc)
            return [None] * len(keys)
        self._worked()
        return list(values)

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        """Store ``value`` for ``ttl_s`` seconds; 0 (or less) stores nothing (caching off)."""
        if ttl_s <= 0:
            return
        client = self._redis()
        if client is None:
            return
        try:
            client.set(self._key(key), value, ex=int(ttl_s))
        except Exception as exc:
            self._failed(exc)
            return
        self._worked()

    def set_many(self, items: list[tuple[str, bytes, int]]) -> None:
        """``set`` for several ``(key, value, ttl_s)`` in one round trip (a pipeline, not a
        transaction): a search miss writes its page and its embedding, a tag request its new labels."""
        items = [item for item in items if item[2] > 0]
        client = self._redis() if items else None
        if client is None:
            return
        try:
            pipe = client.pipeline(transaction=False)
            for key, value, ttl_s in items:
                pipe.set(self._key(key), value, ex=int(ttl_s))
            pipe.execute()
        except Exception as exc:
            self._failed(exc)
            return
        self._worked()

    def status(self) -> dict:
        """``{"state": "ok"|"down"|"disabled", "detail": str}`` for /readyz.

        PINGs at most every second, even inside the breaker's quiet period, so a recovered
        Redis shows (and is used again) as soon as a probe sees it.
        """
        if self.url is None:
            return {"state": "disabled", "detail": "CLAPSEARCH_REDIS_URL is not set: no cache"}
        now = time.monotonic()
        if self._status is not None and now - self._status_at < _STATUS_EVERY_S:
            return dict(self._status)
        where = redact_url(self.url)
        try:
            with self._lock:
                if self._client is None:
                    self._client = redis_client(
                        self.url, connect_timeout_s=self.timeout_s, read_timeout_s=self.timeout_s
                    )
            started = time.perf_counter()
            self._client.ping()
            took_ms = (time.perf_counter() - started) * 1000
        except Exception as exc:
            self._failed(exc)
            status = {"state": "down", "detail": f"{where}: {self._last_error}"}
        else:
            with self._lock:
                self._down_until = 0.0
            self._worked()
            status = {"state": "ok", "detail": f"{where}: PING {took_ms:.1f} ms"}
        self._status, self._status_at = status, time.monotonic()
        return dict(status)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a dead connection is not worth an error
                pass


class VectorLRU:
    """A thread-safe, size-bounded map from cache key to vector, least recently used out first.

    Keys are the embedding keys (model fingerprint + variant + text digest), so a reloaded model
    never reads another model's vectors. Stored arrays are read-only: callers copy out of them.
    """

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get_many(self, keys: list[str]) -> list[np.ndarray | None]:
        if self.max_entries <= 0:
            return [None] * len(keys)
        out: list[np.ndarray | None] = []
        with self._lock:
            for key in keys:
                value = self._items.get(key)
                if value is not None:
                    self._items.move_to_end(key)
                out.append(value)
        return out

    def put(self, key: str, vector: np.ndarray) -> None:
        if self.max_entries <= 0:
            return
        value = vector.copy()
        value.flags.writeable = False
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
