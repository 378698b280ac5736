"""The Redis cache: round trips against a real Redis, and that a missing or dead Redis is a miss,
never an exception, with a circuit breaker that stops hammering it and notices its return."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from service.cache import Cache, redact_url, redis_client

DEAD = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused at once


@pytest.fixture
def cache(redis_url):
    prefix = f"test-cache-{uuid.uuid4().hex[:8]}:"
    c = Cache(redis_url, timeout_s=1.0, prefix=prefix)
    yield c
    c.close()
    raw = redis_client(redis_url, connect_timeout_s=1, read_timeout_s=1)
    keys = list(raw.scan_iter(match=prefix + "*"))
    if keys:
        raw.delete(*keys)
    raw.close()


@pytest.mark.needs_redis
def test_round_trip_is_prefixed(cache, redis_url):
    assert cache.enabled
    assert cache.get("emb:a") is None
    cache.set("emb:a", b"\x00\x01vector", 60)
    assert cache.get("emb:a") == b"\x00\x01vector"
    raw = redis_client(redis_url, connect_timeout_s=1, read_timeout_s=1)
    assert raw.get(cache.prefix + "emb:a") == b"\x00\x01vector"
    assert 0 < raw.ttl(cache.prefix + "emb:a") <= 60
    raw.close()
    assert cache.status()["state"] == "ok"


@pytest.mark.needs_redis
def test_ttl_expires_and_zero_ttl_stores_nothing(cache):
    cache.set("short", b"x", 1)
    cache.set("never", b"y", 0)
    assert cache.get("short") == b"x"
    assert cache.get("never") is None
    time.sleep(1.2)
    assert cache.get("short") is None


@pytest.mark.needs_redis
def test_get_many_is_one_lookup_in_order(cache):
    cache.set("a", b"1", 60)
    cache.set("b", b"2", 60)
    assert cache.get_many(["a", "missing", "b"]) == [b"1", None, b"2"]
    assert cache.get_many([]) == []


@pytest.mark.needs_redis
def test_set_many_stores_each_with_its_ttl_in_one_round_trip(cache, redis_url):
    cache.set_many([("a", b"1", 60), ("b", b"2", 5), ("off", b"3", 0)])
    assert cache.get_many(["a", "b", "off"]) == [b"1", b"2", None]
    raw = redis_client(redis_url, connect_timeout_s=1, read_timeout_s=1)
    assert 5 < raw.ttl(cache.prefix + "a") <= 60 and 0 < raw.ttl(cache.prefix + "b") <= 5
    raw.close()
    cache.set_many([])  # nothing to store: no round trip, no error


def test_disabled_cache_is_always_a_miss():
    c = Cache(None)
    assert not c.enabled
    c.set("a", b"1", 60)
    c.set_many([("a", b"1", 60)])
    assert c.get("a") is None
    assert c.get_many(["a", "b"]) == [None, None]
    assert c.status()["state"] == "disabled"
    c.close()


def test_dead_redis_never_raises_and_reports_down(caplog):
    c = Cache(DEAD, timeout_s=0.2, retry_after_s=30)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="service.cache"):
        for _ in range(20):
            assert c.get("a") is None
            c.set("a", b"1", 60)
            c.set_many([("a", b"1", 60), ("b", b"2", 60)])
            assert c.get_many(["a"]) == [None]
    assert time.monotonic() - started < 2  # the breaker skips Redis after the first error
    assert len([r for r in caplog.records if "unusable" in r.getMessage()]) == 1
    status = c.status()
    assert status["state"] == "down" and "127.0.0.1:1" in status["detail"]
    c.close()


class _Flaky:
    """A client that fails while ``broken``; counts the calls that reached it."""

    def __init__(self, real):
        self.real, self.broken, self.calls = real, False, 0

    def __getattr__(self, name):
        import redis

        def call(*args, **kwargs):
            self.calls += 1
            if self.broken:
                raise redis.ConnectionError("simulated outage")
            return getattr(self.real, name)(*args, **kwargs)

        return call


@pytest.mark.needs_redis
def test_breaker_skips_redis_then_recovers(cache, redis_url, caplog):
    cache.retry_after_s = 0.3
    cache.set("k", b"v", 60)
    flaky = _Flaky(redis_client(redis_url, connect_timeout_s=1, read_timeout_s=1))
    cache._client = flaky
    flaky.broken = True
    with caplog.at_level(logging.WARNING, logger="service.cache"):
        assert cache.get("k") is None
        assert cache.get("k") is None and cache.get_many(["k"]) == [None]
        assert flaky.calls == 1  # skipped inside the quiet period
        flaky.broken = False
        time.sleep(0.35)
        assert cache.get("k") == b"v"  # tried again, and it works
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unusable" in m for m in messages) == 1 and sum("is back" in m for m in messages) == 1
    flaky.real.close()


def test_redact_url_hides_password():
    assert redact_url("redis://user:s3cret@host:6380/2") == "redis://user:***@host:6380/2"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"


# ----------------------------------------------------------------------------- in-process LRU


def test_vector_lru_keeps_the_most_recently_used():
    import numpy as np

    from service.cache import VectorLRU

    lru = VectorLRU(max_entries=2)
    a, b, c = (np.full(4, v, np.float32) for v in (1.0, 2.0, 3.0))
    lru.put("a", a)
    lru.put("b", b)
    assert lru.get_many(["a"])[0] is not None  # "a" is now the most recent
    lru.put("c", c)
    got = lru.get_many(["a", "b", "c"])
    assert got[1] is None and len(lru) == 2
    assert np.array_equal(got[0], a) and np.array_equal(got[2], c)
    a[:] = 9.0  # the cache keeps its own copy, and it cannot be written through
    assert lru.get_many(["a"])[0][0] == 1.0
    with pytest.raises(ValueError):
        got[0][0] = 5.0


def test_vector_lru_of_size_zero_stores_nothing():
    import numpy as np

    from service.cache import VectorLRU

    lru = VectorLRU(max_entries=0)
    lru.put("a", np.ones(4, np.float32))
    assert lru.get_many(["a", "b"]) == [None, None] and len(lru) == 0
