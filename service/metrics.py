"""Prometheus metrics: request latency per route, time per pipeline stage, batching and caches.

One registry per app (not prometheus_client's global one), so several apps in one process (tests,
the benchmark) never collide. ``/metrics`` renders it in the text exposition format.

    clapsearch_request_seconds{route,method,status}   histogram, whole request
    clapsearch_stage_seconds{stage}                   histogram: decode, embed_text, embed_audio,
                                                      search, database, cache, peaks
    clapsearch_batch_size                             histogram: queries per inference batch
    clapsearch_queue_depth                            gauge: inference requests waiting
    clapsearch_cache_total{kind,result}               counter: embedding/result cache hit|miss|skip
    clapsearch_index_vectors{collection,kind}         gauge: vectors in the loaded index version
    clapsearch_index_reloads_total                    counter: hot reloads of a new version
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Latency buckets from sub-millisecond cache hits up to slow uploads.
_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGES = ("decode", "embed_text", "embed_audio", "search", "database", "cache", "peaks")


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Histogram(
            "clapsearch_request_seconds",
            "Request latency by route",
            ["route", "method", "status"],
            buckets=_SECONDS,
            registry=r,
        )
        self.stages = Histogram(
            "clapsearch_stage_seconds", "Time spent per pipeline stage", ["stage"], buckets=_SECONDS, registry=r
        )
        self.batch_size = Histogram(
            "clapsearch_batch_size", "Queries per inference batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r
        )
        self.queue_depth = Gauge("clapsearch_queue_depth", "Inference requests waiting", registry=r)
        self.cache = Counter("clapsearch_cache_total", "Cache lookups", ["kind", "result"], registry=r)
        self.index_vectors = Gauge(
            "clapsearch_index_vectors", "Vectors in the loaded index version", ["collection", "kind"], registry=r
        )
        self.reloads = Counter(
            "clapsearch_index_reloads_total", "Hot reloads of a newly published index version", registry=r
        )
        for stage in STAGES:  # export every stage from the start, so dashboards see zeros
            self.stages.labels(stage)

    def observe(self, stage: str, seconds: float) -> None:
        self.stages.labels(stage).observe(seconds)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(name, time.perf_counter() - start)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware task overhead): times each HTTP request and labels it
    with the matched route template (``/v1/items/{item_id}``), never the raw path, so ids do
    not explode the label space."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, scope.get("method", ""), str(status["code"])).observe(
                time.perf_counter() - start
            )
