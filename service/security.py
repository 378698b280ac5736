"""Optional API-key auth and per-key rate limits, as one FastAPI dependency.

Keys come from ``CLAPSEARCH_API_KEYS``; with none configured the API is open (the embedded
default on a laptop). A client sends its key as ``X-API-Key: K`` or ``Authorization: Bearer K``.
Keys are never taken from URLs: ``?api_key=`` is refused (400 ``auth.key_in_url``), because
URLs end up in access logs, proxies and browser histories, and it is redacted from the access log.
Health, readiness and the page shell never need one.

Media the browser fetches by itself (``<audio src>``) cannot carry a header. The page posts its
key once to ``POST /v1/media-session``, which sets an HttpOnly, SameSite=Strict cookie scoped to
``/v1/items/``: an expiry signed with HMAC-SHA256 under a secret derived from the configured keys
(every worker and replica accepts it; changing the keys voids every cookie). The cookie is only
accepted for GET/HEAD under ``/v1/items/``: it reads audio, it cannot search, ingest or write.

Wrong keys are limited per client address (``auth_failures_per_minute``): past that many in a
minute, every request from the address gets 429 ``auth.rate_limited`` with Retry-After until the
budget refills, right key or not, so keys cannot be guessed at network speed.

Rate limits are token buckets (``rate_limit_per_minute`` refill, ``rate_limit_burst`` capacity)
kept per key, or per client address when auth is off. They live in each replica's memory:
N replicas behind a load balancer admit up to N times the rate, which is the usual trade for
not putting Redis on the path of every request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
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

    def wait(self, who: str) -> float:
        """Like :meth:`take`, without taking: 0 when a token is available."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(who, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate


MEDIA_COOKIE = "clapsearch_media"
MEDIA_PATH = "/v1/items/"
MEDIA_TTL_S = 8 * 3600


class MediaCookies:
    """Signed expiry times: proof that this browser presented a valid key recently."""

    def __init__(self, keys: list[bytes]):
        self.secret = hashlib.sha256(b"clapsearch-media\0" + b"\0".join(sorted(keys))).digest()

    def _sign(self, expires: str) -> str:
        return hmac.new(self.secret, expires.encode(), "sha256").hexdigest()

    def issue(self) -> str:
        expires = str(int(time.time()) + MEDIA_TTL_S)
        return f"{expires}.{self._sign(expires)}"

    def valid(self, token: str | None) -> bool:
        expires, _, signature = (token or "").partition(".")
        if not expires.isdigit() or int(expires) < time.time():
            return False
        return hmac.compare_digest(signature, self._sign(expires))


class _RedactKeys(logging.Filter):
    """Blanks ``api_key=`` values in uvicorn's access log lines (its args hold the full path)."""

    pattern = re.compile(r"(api_key=)[^&\s]*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.pattern.sub(r"\1REDACTED", a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_keys_in_access_log() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactKeys) for f in logger.filters):
        logger.addFilter(_RedactKeys())


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Guard:
    """Callable dependency: authenticates, then rate-limits. Stored on ``app.state.guard``."""

    def __init__(self, keys: set[str], per_minute: int, burst: int, *, failures_per_minute: int = 10):
        self.keys = [k.encode() for k in keys]
        self.buckets = TokenBuckets(per_minute, burst) if per_minute > 0 else None
        self.failures = TokenBuckets(failures_per_minute, failures_per_minute) if failures_per_minute > 0 else None
        self.media = MediaCookies(self.keys)

    def _authenticate(self, request: Request) -> str:
        if "api_key" in request.query_params:
            raise ProblemError(
                "auth.key_in_url",
                "API keys are not accepted in URLs (they end up in logs and histories); "
                "send X-API-Key or Authorization: Bearer",
            )
        address = _address(request)
        if not self.keys:
            return f"addr:{address}"
        if self.failures is not None and (wait := self.failures.wait(address)) > 0:
            retry = max(1, int(wait + 0.999))
            raise ProblemError(
                "auth.rate_limited", f"too many wrong API keys; retry in {retry} s", headers={"Retry-After": str(retry)}
            )
        key = presented_key(request)
        if not key:
            if self._media_cookie(request):
                return f"media:{address}"
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
            if self.failures is not None:
                self.failures.take(address)
            raise ProblemError(
                "auth.invalid_key",
                "the API key is not accepted",
                headers={"WWW-Authenticate": 'Bearer realm="clapsearch", error="invalid_token"'},
            )
        return "key:" + hmac.new(b"clapsearch", given, "sha256").hexdigest()[:16]

    def _media_cookie(self, request: Request) -> bool:
        return (
            request.method in ("GET", "HEAD")
            and request.url.path.startswith(MEDIA_PATH)
            and self.media.valid(request.cookies.get(MEDIA_COOKIE))
        )

    def __call__(self, request: Request) -> str:
        who = self._authenticate(request)
        if self.buckets is not None:
            wait = self.buckets.take(who)
            if wait > 0:
                retry = max(1, int(wait + 0.999))
                raise ProblemError(
                    "auth.rate_limited", f"rate limit exceeded; retry in {retry} s", headers={"Retry-After": str(retry)}
                )
        return who


async def require_access(request: Request) -> str:
    """The dependency routers declare; the guard itself is configured per app."""
    return request.app.state.guard(request)
