#!/usr/bin/env python
"""Load and soak of the search service: mixed traffic at high concurrency for a bounded time,
throughput, latency per kind of request, errors, and whether memory stays flat once warm.

    python bench/soak.py                                   # 20k vectors, c=8 then c=64 for 180 s -> bench/results_soak.json
    python bench/soak.py --seconds 600 --redis-url redis://127.0.0.1:6379/14
    python bench/soak.py --server-env MALLOC_ARENA_MAX=2      # the server under another allocator setting
    python bench/soak.py --smoke --home /tmp/soak          # a few seconds, 500 vectors, c=16 (tests/bench/test_soak.py)

Fixture: ``bench/service_fixture.py``'s (``--n`` synthetic rows bound to the v1 model in a
collection ``bench``, published as an ingest would). Server: ``bench/service_load.py``'s
``start_server`` (uvicorn, one worker, rate limiting off; its process tree's RSS sampled every
0.5 s). Client: ``httpx.AsyncClient`` in this process, closed loop: C tasks, each sending its
next request when the previous answer arrived. The mix, drawn per request:

    60 %  GET  /v1/search?q=...       text search; a third of them repeat one of 32 texts (cache
                                      hits with Redis), the others are unique (misses)
    15 %  POST /v1/classify           zero-shot labels of an indexed item (JSON, by id)
    10 %  POST /v1/search/audio       a generated 1 s WAV uploaded (multipart): decode + embed
    15 %  GET  /v1/items/{id}/similar query by example

Phases: a warm-up at the top concurrency (``--warmup`` s, not measured), the peer phase at
concurrency 8, then the soak at ``--concurrency`` (64) for ``--seconds``. An error is any answer
other than 200 or any transport failure; a 503 with Retry-After (the upload queue is full: the
service's designed back-pressure) is waited out and sent again, as a client should, and counted
apart (``shed_and_retried``). Memory drift: median RSS of the soak's last 10 % of
samples against its first 10 % (the target: within 5 %). The ratio printed is the soak's
throughput against the c=8 phase measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu_info, git, loadavg, write_results
from service_fixture import REPO, build_fixture
from service_load import start_server, stop_server

KINDS = (("search", 0.60), ("classify", 0.15), ("upload", 0.10), ("similar", 0.15))
LABELS = ["dog barking", "rain", "glass breaking", "engine", "birds singing", "footsteps"]


def _wav(seed: int) -> bytes:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(16_000) / 16_000
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 3000) * t) + 0.02 * rng.standard_normal(t.size)
    out = io.BytesIO()
    sf.write(out, x.astype(np.float32), 16_000, format="WAV", subtype="PCM_16")
    return out.getvalue()


class Traffic:
    """One closed-loop phase; answers tallied per kind."""

    def __init__(self, port: int, ids: list[int], uploads: list[bytes], seed: int):
        self.base = f"http://127.0.0.1:{port}"
        self.ids, self.uploads = ids, uploads
        self.rng = random.Random(seed)
        self.counter = 0

    async def _one(self, client, kind: str):
        self.counter += 1
        if kind == "search":
            n = self.counter
            q = f"sound {n % 32}" if n % 3 == 0 else f"a sound of things {n} {self.rng.random():.6f}"
            r = await client.get("/v1/search", params={"q": q})
        elif kind == "classify":
            r = await client.post("/v1/classify", json={"id": self.rng.choice(self.ids), "candidate_labels": LABELS})
        elif kind == "upload":
            files = {"file": ("clip.wav", self.rng.choice(self.uploads), "audio/wav")}
            r = await client.post("/v1/search/audio", files=files)
        else:
            r = await client.get(f"/v1/items/{self.rng.choice(self.ids)}/similar")
        return r

    async def run(self, concurrency: int, seconds: float) -> dict:
        import httpx

        latencies: dict[str, list[float]] = {k: [] for k, _ in KINDS}
        errors: dict[str, int] = {}
        shed: dict[str, int] = {}  # 503 + Retry-After answers, retried after the wait
        names, weights = zip(*KINDS)
        deadline = time.perf_counter() + seconds
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

        async def worker(client) -> None:
            while time.perf_counter() < deadline:
                kind = self.rng.choices(names, weights)[0]
                t0 = time.perf_counter()
                try:
                    r = await self._one(client, kind)
                    # Back-pressure, not an error: a full upload queue answers 503 with Retry-After,
                    # and a well-behaved client waits that long and sends the request again.
                    while r.status_code == 503 and "retry-after" in r.headers and time.perf_counter() < deadline:
                        shed[kind] = shed.get(kind, 0) + 1
                        await asyncio.sleep(min(float(r.headers["retry-after"]), 5.0))
                        r = await self._one(client, kind)
                    status: int | str = r.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                if status == 200:
                    latencies[kind].append((time.perf_counter() - t0) * 1000)
                else:
                    errors[f"{kind}:{status}"] = errors.get(f"{kind}:{status}", 0) + 1

        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=self.base, limits=limits, timeout=60.0) as client:
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
        done = sum(len(v) for v in latencies.values())
        every = sorted(x for v in latencies.values() for x in v)
        return {
            "concurrency": concurrency,
            "seconds": round(wall, 1),
            "requests": done + sum(errors.values()),
            "errors": sum(errors.values()),
            "error_kinds": errors,
            "shed_and_retried": shed,
            "rps": round(done / wall, 1),
            "p50_ms": _pct(every, 50),
            "p99_ms": _pct(every, 99),
            "by_kind": {
                k: {"n": len(v), "p50_ms": _pct(sorted(v), 50), "p99_ms": _pct(sorted(v), 99)}
                for k, v in latencies.items()
            },
        }


def _pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q / 100))], 2)


def _drift(samples: list[int]) -> dict:
    """RSS at the start and end of the soak (median of the first and last 10 % of samples)."""
    if len(samples) < 4:
        return {"samples": len(samples)}
    tenth = max(2, len(samples) // 10)
    first, last = statistics.median(samples[:tenth]), statistics.median(samples[-tenth:])
    return {
        "samples": len(samples),
        "start_mb": round(first / 2**20, 1),
        "end_mb": round(last / 2**20, 1),
        "peak_mb": round(max(samples) / 2**20, 1),
        "drift_pct": round(100 * (last - first) / first, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="indexed vectors in the fixture")
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the soak at --concurrency")
    parser.add_argument("--peer-seconds", type=float, default=30.0, help="length of the c=8 phase")
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--redis-url", default=None, help="cache and notices (default: none)")
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results_soak.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few seconds on 500 vectors")
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE", help="extra environment of the server"
    )
    args = parser.parse_args()
    if args.smoke:
        args.n, args.seconds, args.peer_seconds, args.warmup, args.concurrency = 500, 3.0, 1.5, 1.0, 16
    home = args.home or REPO / "runs" / "bench-soak" / f"home-{args.n}"
    load0, started = loadavg(), time.perf_counter()
    fixture = build_fixture(home, args.n, args.seed)
    server_env = dict(item.split("=", 1) for item in args.server_env)
    server = start_server(home, args.redis_url, home.parent / "soak-server.log", extra_env=server_env)
    try:
        from service_fixture import COLLECTION, open_store

        from indexer.store.vector_rows import live_ids

        store = open_store(home)
        try:
            ids = [int(i) for i in live_ids(store.db, store.collection(COLLECTION).id, "files")[:5000]]
        finally:
            store.close()
        traffic = Traffic(server["port"], ids, [_wav(s) for s in range(16)], args.seed)
        asyncio.run(traffic.run(args.concurrency, args.warmup))
        peer = asyncio.run(traffic.run(8, args.peer_seconds))
        print(f"c=8: {peer['rps']} req/s, p50 {peer['p50_ms']} ms, p99 {peer['p99_ms']} ms, errors {peer['errors']}")
        soak_start = time.perf_counter() - server["sampler"].t0
        soak = asyncio.run(traffic.run(args.concurrency, args.seconds))
        memory = _drift(server["sampler"].since(soak_start))
        series = [(t, rss) for t, rss in server["sampler"].samples if t >= soak_start]
        step = max(1, len(series) // 40)
        memory["rss_mb_series"] = [[round(t - soak_start, 1), round(rss / 2**20, 1)] for t, rss in series[::step]]
    finally:
        stop_server(server)
    ratio = soak["rps"] / peer["rps"] if peer["rps"] else None
    print(
        f"c={args.concurrency} for {soak['seconds']} s: {soak['rps']} req/s ({ratio:.2f}x c=8), p50 {soak['p50_ms']} "
        f"ms, p99 {soak['p99_ms']} ms, {soak['requests']} requests, {soak['errors']} errors; RSS "
        f"{memory.get('start_mb')} -> {memory.get('end_mb')} MB ({memory.get('drift_pct')} %)"
    )
    results = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": cpu_info("cores_per_socket", "threads_per_core", "hypervisor")
        | {"loadavg_start": load0, "loadavg_end": loadavg(), "commit": git("rev-parse", "--short", "HEAD")},
        "fixture": {"n": args.n, "reused": fixture.get("reused"), "index": fixture.get("index", {}).get("describe")},
        "server": {"ready_s": server["ready_s"], "redis": args.redis_url, "env": server_env},
        "peer_c8": peer,
        "soak": soak,
        "throughput_vs_c8": round(ratio, 2) if ratio else None,
        "memory": memory,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    write_results(args.out, results)
    return 0 if soak["errors"] == 0 and peer["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
