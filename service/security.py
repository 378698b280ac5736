"""Optional API-key auth and per-key rate limits, as one FastAPI dependency.

Keys come from ``CLAPSEARCH_API_KEYS``; with none configured the API is open (the embedded
default on a laptop). A client sends its key as ``X-API-Key: K`` or ``Authorization: Bearer K``,
or as ``?api_key=K`` where a browser cannot set headers (``<audio src>``). Health, readiness
and the page shell never need one.

Rate limits are token buckets (``rate_limit_per_minute`` refill, ``rate_limit_burst`` capacity)
kept per key, or per client address when auth is off. They live in each replica's memory:
N replicas behind a load balancer admit up to N times the rate, which is the usual trade for
not putting Redis on the path of every request.
"""

from __future__ import annotations

import hmac
import threading
import time

from fastapi import Request

from service.problems import ProblemError


class TokenBuckets:
    def __init__(self, per_minute: int, burst: int, *, max_clients: int = 100_000):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # who -> (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, who: str) -> float:
        """0 when admitted, else the seconds until a token is available."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(who, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                if len(self._buckets) >= self.max_clients and who not in self._buckets:
                    self._buckets.clear()  # bounded memory under address churn
                self._buckets[who] = (tokens - 1.0, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1.0 - tokens) / self.rate


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query_params.get("api_key")


class Guard:
    """Callable dependency: authenticates, then rate-limits. Stored on ``app.state.guard``."""

    def __init__(self, keys: set[str], per_minute: int, burst: int):
        self.keys = [k.encode() for k in keys]
        self.buckets = TokenBuckets(per_minute, burst) if per_minute > 0 else None

    def _authenticate(self, request: Request) -> str:
        if not self.keys:
            return f"addr:{request.client.host if request.client else 'unknown'}"
        key = presented_key(request)
        if not key:
            raise ProblemError(
                "auth.required",
                "send an API key as X-API-Key or Authorization: Bearer",
                headers={"WWW-Authenticate": 'Bearer realm="clapsearch"'},
            )
        given = key.encode()
        # compare with every key, constant time, so timing does not reveal a key's prefix
        matched = False
        for known in self.keys:
            matched |= hmac.compare_digest(given, known)
        if not matched:
            raise ProblemError(
                "auth.invalid_key",
                "the API key is not accepted",
                headers={"WWW-Authenticate": 'Bearer realm="clapsearch", error="invalid_token"'},
            )
        return "key:" + hmac.new(b"clapsearch", given, "sha256").hexdigest()[:16]

    def __call__(self, request: Request) -> str:
        who = self._authenticate(request)
        if self.buckets is not None:
            wait = self.buckets.take(who)
            if wait > 0:
                retry = max(1, int(wait + 0.999))
                raise ProblemError(
                    "rate_limited", f"rate limit exceeded; retry in {retry} s", headers={"Retry-After": str(retry)}
                )
        return who


async def require_access(request: Request) -> str:
    """The dependency routers declare; the guard itself is configured per app."""
    return request.app.state.guard(request)
