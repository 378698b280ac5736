#!/usr/bin/env python
"""Search service benchmark: ``/v1/search`` over HTTP on loopback against the same queries run
through ``indexer`` directly (encode + search, the "raw" time), at 1 M indexed vectors.

    python bench/service.py                                   # 1 M vectors, concurrency 1/8/64 -> bench/results_service.json
    python bench/service.py --no-redis                        # the embedded default (no cache)
    python bench/service.py --quick --home /tmp/bs            # smoke run (tests/bench/test_service.py)

Target (issue 6): on this 2-core machine with the default model and 1 M indexed vectors, p50 and
p99 of ``/v1/search`` at concurrency 1, 8 and 64, cache hits vs misses, queries/s, and the
service overhead over the raw encode+search time under 20 %; zero errors; the service's resident
memory (model + index + overhead) reported and stable over the run.

Fixture (built once, reused; ``--home``, default ``runs/bench-service/home-<n>``): a
CLAPSEARCH_HOME whose SQLite database holds one collection ``bench`` bound to the shipped default
model and ``--n`` synthetic file rows, bulk-inserted with SQLAlchemy Core (the ingest's per-row
ORM writes would take an hour at 1 M), then published by ``Store.publish`` exactly as an ingest
would (planned index, trained, autotuned nprobe). Vectors: ``bench/index.py``'s clustered
generator (n / 40 clusters of low intrinsic dimension around 1,000 topics) with every cluster
pulled towards the text embedding of one of ~160 sound captions (embedded by the model's text
tower), so text queries about those sounds land in populated regions of the space as real ones do.
A stamp (``fixture.json``) records n, seed, model fingerprint and the build time; a run with the
same values reuses the fixture.

Peer ("raw"): the same query texts in this process through ``ClapEncoder.embed_text([q])`` +
``Searcher(store, "bench").search_vectors(v, k=10)`` (FAISS search + the SQL metadata join), one
at a time, with ONNX Runtime set as the API sets it by default (``--peer-onnx indexer``: as the
indexer CLI sets it, a thread per core and spinning, which earlier runs used); alternating with
the service's concurrency-1 cache-miss phase in ``--rounds`` rounds on the same texts. Overhead =
median over the rounds of service p50 (c=1, misses) / raw p50 - 1.

Service: ``uvicorn --factory service.app:create_app --workers 1`` in a subprocess on a free
loopback port (Redis db 14 flushed first unless ``--no-redis``; rate limiting off); the load
generator is another process (so it shares no GIL with the server): closed loop, C connections
with keep-alive, each sending its next request as soon as the previous answer arrived. Its
client is a minimal HTTP/1.1 client on asyncio streams (``--client httpx`` uses
``httpx.AsyncClient``); its own CPU per request is reported. Phases per concurrency:
``miss``: every text unique (both the embedding and the result cache miss; ``cached`` must be
false in every answer); ``hit``: 32 texts asked once beforehand, then repeated (result-cache
hits; with ``--no-redis`` there is no cache and these are plain repeats). Each phase starts with
a short untimed warm-up at its concurrency. Any non-200 answer, or a 200 without 10 results,
counts as an error.

Memory: the RSS of the server's process tree, sampled every 0.5 s from its start to the end of
the run: at readiness, after the first warm-up ("start"), peak, end, growth; and what it is made
of (model files, index file, the RSS of a bare ``import service.app``).

Contention (2 shared cores): before each timed block the script waits (up to ``--wait-quiet``
s) for other processes to leave the CPUs idle and records the CPU share other processes took
during it (everything but this script, the server and the load generator).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import service_report as report
from machine import loadavg, wait_quiet
from service_fixture import build_fixture, query_texts, warm_database
from service_load import Peer, import_baseline_rss, loadgen_main, run_load, run_load_health, start_server, stop_server

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the indexer, which the fixture and the peer import when they run


class Texts:
    """The query texts of one run: deterministic, disjoint per use (the c=1 miss phase asks the
    peer's texts)."""

    def __init__(self, args, conc_levels: list[int]):
        self.stream = query_texts(args.seed)
        warm_n = args.warmup
        self.peer = self.take(args.requests)
        self.miss = {c: (self.peer if c == 1 else self.take(args.requests)) for c in conc_levels}
        self.miss_warm = {c: self.take(max(warm_n, c * 2)) for c in conc_levels}
        self.hit_set = self.take(args.hit_set)
        self.peer_warm = self.take(warm_n)

    def take(self, m: int) -> list[str]:
        return [next(self.stream) for _ in range(m)]


class Phases:
    """The measured part of a run against a started server: the peer, the miss and hit phases and
    the load generator's own cost; records in ``phases``, ``peer_rounds`` and ``peer_lat``."""

    def __init__(self, args, server: dict, texts: Texts):
        self.args, self.texts, self.server = args, texts, server
        self.proc, self.port, self.sampler = server["proc"], server["port"], server["sampler"]
        self.phases, self.peer_rounds, self.peer_lat = [], [], []

    def load(self, texts: list[str], c: int, warmup: list[str], metrics: bool = False) -> dict:
        return run_load(
            self.port, texts, c, warmup=warmup, client=self.args.client, metrics=metrics, mode=self.args.mode
        )

    def record(
        self, kind: str, c: int, r: dict, window: dict, waited: float, load: str, extra: dict | None = None
    ) -> None:
        row = report.phase_row(kind, c, r, window, waited, load, self.sampler.sample(), extra)
        self.phases.append(row)
        report.print_phase(row)

    def phase(self, kind: str, c: int, texts: list[str], warm: list[str]) -> None:
        waited = wait_quiet(self.args.wait_quiet)
        load = loadavg()
        with report.CpuWindow(self.proc.pid) as w:
            r = self.load(texts, c, warm, metrics=True)
        self.record(kind, c, r, w.record(), waited, load)

    def _peer_round(self, peer: Peer, chunk: list[str], warm: list[str], row: dict) -> None:
        with report.CpuWindow(self.proc.pid) as w:
            peer.run(warm)
            cpu0 = time.process_time()
            res = peer.run(chunk)
            row["peer_cpu_ms"] = round((time.process_time() - cpu0) / len(chunk) * 1e3, 3)
        self.peer_lat.extend(res.pop("_latencies"))
        row["peer_p50_ms"] = res["total"]["p50_ms"]
        row["peer_embed_p50_ms"] = res["embed_p50_ms"]
        row["peer_search_and_join_p50_ms"] = res["search_and_join_p50_ms"]
        row["peer_other_cpu_pct"] = w.record()["other_cpu_pct"]

    def _service_round(self, chunk: list[str], warm: list[str], row: dict, merged: dict, totals: dict) -> None:
        with report.CpuWindow(self.proc.pid) as w:
            cpu0 = report.tree_cpu(self.proc.pid)
            res = self.load(chunk, 1, warm)
            served = len(chunk) + len(warm)  # the server's CPU covers its warm-up requests too
            row["service_cpu_ms"] = round((report.tree_cpu(self.proc.pid) - cpu0) / served * 1e3, 3)
        for key in ("latencies_ms", "took_ms", "errors"):
            merged[key].extend(res[key])
        for key in ("cached", "short_results", "wall_s", "cpu_s"):
            merged[key] += res[key]
        for k, v in res["statuses"].items():
            merged["statuses"][k] = merged["statuses"].get(k, 0) + v
        for k in totals:
            totals[k] += w.record()[k]
        row["service_p50_ms"] = round(report.pct(res["latencies_ms"], 50), 3)
        row["service_other_cpu_pct"] = w.record()["other_cpu_pct"]

    def interleaved_c1(self, peer: Peer) -> None:
        """c=1 misses and the peer in alternating rounds on the same texts, so that both see the
        same machine (the other tenants' load on this VM changes from minute to minute)."""
        peer_texts = self.texts.peer
        rounds = max(1, min(self.args.rounds, len(peer_texts)))
        size = -(-len(peer_texts) // rounds)
        merged = {
            "latencies_ms": [],
            "took_ms": [],
            "statuses": {},
            "errors": [],
            "cached": 0,
            "short_results": 0,
            "wall_s": 0.0,
            "cpu_s": 0.0,
        }
        totals = {"other_cpu_s": 0.0, "own_cpu_s": 0.0, "wall_s": 0.0}
        waited_all, load = 0.0, loadavg()
        m_before = report.get_text(self.port, "/metrics")
        for r_i in range(rounds):
            chunk = peer_texts[r_i * size : (r_i + 1) * size]
            warm = self.texts.take(5)
            if not chunk:
                break
            waited_all += wait_quiet(self.args.wait_quiet / rounds)
            row = {"round": r_i, "queries": len(chunk), "first": "peer" if r_i % 2 == 0 else "service"}
            for who in ("peer", "service") if r_i % 2 == 0 else ("service", "peer"):
                if who == "peer":
                    self._peer_round(peer, chunk, warm, row)
                else:
                    self._service_round(chunk, warm, row, merged, totals)
            row["overhead_p50"] = round(row["service_p50_ms"] / row["peer_p50_ms"] - 1, 4)
            row["overhead_cpu"] = round(row["service_cpu_ms"] / row["peer_cpu_ms"] - 1, 4)
            self.peer_rounds.append(row)
            print(
                f"  c=1 round {r_i}: peer p50 {row['peer_p50_ms']:.2f} ms, "
                f"service p50 {row['service_p50_ms']:.2f} ms "
                f"({100 * row['overhead_p50']:+.1f} %); CPU per query {row['peer_cpu_ms']:.2f} / "
                f"{row['service_cpu_ms']:.2f} ms ({100 * row['overhead_cpu']:+.1f} %); other processes {row['peer_other_cpu_pct']:.0f} / "
                f"{row['service_other_cpu_pct']:.0f} % CPU",
                flush=True,
            )
        merged["metrics_before"], merged["metrics_after"] = m_before, report.get_text(self.port, "/metrics")
        ncpu = os.cpu_count() or 1
        window = {
            "other_cpu_s": round(totals["other_cpu_s"], 2),
            "other_cpu_pct": round(100 * totals["other_cpu_s"] / max(1e-9, totals["wall_s"] * ncpu), 1),
            "own_cpu_s": round(totals["own_cpu_s"], 2),
            "wall_s": round(totals["wall_s"], 2),
        }
        extra = {"interleaved_with_peer_rounds": len(self.peer_rounds)}
        self.record("miss", 1, merged, window, waited_all, load, extra)

    def measure(self, home: Path, conc_levels: list[int]) -> None:
        args, texts, warm_n = self.args, self.texts, self.args.warmup
        # the peer, loaded beside the idle server
        peer = Peer(home, onnx=args.peer_onnx)
        peer.run(texts.peer_warm)

        # first contact: one warm-up pass through the service so that "start" RSS is after load
        self.load(texts.take(max(warm_n, 8)), 1, [])
        self.t_start = time.perf_counter() - self.sampler.t0
        self.rss_start = self.sampler.sample()

        # misses: c=1 interleaved with the peer on the same texts, then higher concurrency
        for c in conc_levels:
            if c == 1:
                self.interleaved_c1(peer)
            else:
                self.phase("miss", c, texts.miss[c], texts.miss_warm[c])
        if 1 not in conc_levels:
            res = peer.run(texts.peer)
            self.peer_lat.extend(res.pop("_latencies"))
        peer.close()
        del peer

        # hits: the hit set asked once (fills the result cache), then repeated
        hit_set = texts.hit_set
        self.load(hit_set, 1, [])
        time.sleep(0.5)  # the cache writes run after the response
        for c in conc_levels:
            hits = [hit_set[i % len(hit_set)] for i in range(args.hit_requests or args.requests)]
            self.phase("hit", c, hits, [hit_set[i % len(hit_set)] for i in range(max(warm_n, 2 * c))])

        # the load generator's own cost: /healthz is the cheapest answer the app gives
        self.health = {kind: run_load_health(self.port, kind) for kind in ("raw", "httpx")}
        self.metrics_text = report.get_text(self.port, "/metrics")
        self.rss_end = self.sampler.sample()


def redis_for(args) -> str | None:
    """The Redis URL the server gets, flushed so that every phase starts with cold caches; None
    with --no-redis."""
    redis_url = None if args.no_redis else args.redis_url
    if redis_url:
        try:
            import redis

            client = redis.Redis.from_url(redis_url, socket_connect_timeout=3)
            client.flushdb()
            client.close()
        except Exception:  # no client library, refused, timed out: no Redis for this run
            raise SystemExit(f"Redis {redis_url} is not reachable (use --no-redis for the embedded default)") from None
    return redis_url


def run(args) -> dict:
    conc_levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    home = (args.home or REPO / "runs" / "bench-service" / f"home-{args.n}").resolve()
    work = home.parent
    work.mkdir(parents=True, exist_ok=True)
    machine = report.machine_info()
    t_run = time.perf_counter()

    with report.CpuWindow(None) as cw:
        fixture = build_fixture(home, args.n, args.seed, rebuild=args.rebuild)
    fixture["this_run"] = cw.record() if not fixture.get("reused") else None
    if args.build_only:
        return {"fixture": fixture}

    redis_url = redis_for(args)
    texts = Texts(args, conc_levels)
    baseline_rss = import_baseline_rss()
    page_cache = warm_database(home) if args.warm_db else None
    extra_env = dict(kv.split("=", 1) for kv in args.server_env)
    print(
        f"starting the server (redis: {redis_url or 'off'}{', env ' + str(extra_env) if extra_env else ''}) ...",
        flush=True,
    )
    server = start_server(home, redis_url, work / "server.log", extra_env=extra_env)
    print(
        f"server ready in {server['ready_s']:.1f} s (vocabulary embedded at {server['ready_with_vocabulary_s']:.1f} s), "
        f"RSS {server['rss_ready'] / 2**20:,.0f} MiB",
        flush=True,
    )
    ph = Phases(args, server, texts)
    try:
        ph.measure(home, conc_levels)
    finally:
        stop_server(server)

    peer_sum = report.summarize(ph.peer_lat)
    overhead = report.overhead_figures(ph.phases, ph.peer_rounds, peer_sum)
    memory = report.memory_figures(
        home,
        ph.sampler,
        baseline_rss=baseline_rss,
        rss_ready=server["rss_ready"],
        rss_start=ph.rss_start,
        t_start=ph.t_start,
        rss_end=ph.rss_end,
    )
    errors = sum(p["errors"] for p in ph.phases)
    met = bool(overhead and overhead["p50"] < report.OVERHEAD_TARGET and errors == 0)
    return {
        "command": " ".join([".venv/bin/python", "bench/service.py", *sys.argv[1:]]),
        "machine": machine | {"loadavg_end": loadavg()},
        "run_s": round(time.perf_counter() - t_run, 1),
        "code": report.code_state(),
        "fixture": fixture,
        "database_page_cache": page_cache,
        "server": {
            "command": " ".join(server["command"][1:]),
            "redis": redis_url,
            "extra_env": extra_env,
            "query_mode": args.mode or "default (hybrid)",
            "ready_s": server["ready_s"],
            "ready_with_vocabulary_s": server["ready_with_vocabulary_s"],
            "readyz": server["readyz"],
            "metrics_excerpt": report.metrics_excerpt(ph.metrics_text),
        },
        "client": {"kind": args.client, "healthz": ph.health},
        "peer": {
            "what": "ClapEncoder.embed_text([q]) + Searcher.search_vectors(v, k=10) in-process, sequential",
            "onnx": args.peer_onnx,
            "queries": len(ph.peer_lat),
            **peer_sum,
            "rounds": ph.peer_rounds,
        },
        "phases": ph.phases,
        "overhead": overhead,
        "memory": memory,
        "errors": errors,
        "target": {
            "overhead_p50_max": report.OVERHEAD_TARGET,
            "overhead_p50": overhead.get("p50"),
            "errors": errors,
            "memory_stable": memory["stable"],
            "met": met,
        },
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--loadgen"]:
        return loadgen_main()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=None, help="indexed vectors (default 1,000,000; --quick 20,000)")
    ap.add_argument("--requests", type=int, default=None, help="timed requests per phase (default 2000; --quick 40)")
    ap.add_argument("--hit-requests", type=int, default=None, help="timed requests per hit phase (default --requests)")
    ap.add_argument("--concurrency", default=None, help="comma list (default 1,8,64; --quick 1,4)")
    ap.add_argument("--out", type=Path, default=Path("bench/results_service.json"))
    ap.add_argument("--home", type=Path, default=None, help="fixture dir (default runs/bench-service/home-<n>)")
    ap.add_argument("--no-redis", action="store_true", help="serve without Redis (the embedded default: no cache)")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/14", help="flushed before the run")
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw", help="load generator's HTTP client")
    ap.add_argument("--hit-set", type=int, default=32, help="distinct texts of the hit phases")
    ap.add_argument("--warmup", type=int, default=None, help="untimed requests before each phase (default 50)")
    ap.add_argument("--wait-quiet", type=float, default=None, help="max s to wait for a quiet machine per block")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="c=1 miss phase and peer interleaved in this many rounds (default 10; --quick 2)",
    )
    ap.add_argument(
        "--no-warm-db",
        dest="warm_db",
        action="store_false",
        help="do not read the database file into the page cache first (cold metadata joins)",
    )
    ap.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="K=V",
        help="extra environment of the server (e.g. OMP_NUM_THREADS=1), recorded in the JSON",
    )
    ap.add_argument(
        "--mode",
        choices=("hybrid", "audio", "text"),
        default=None,
        help="the searches' mode parameter (default: not sent, the API's default hybrid: words ranked too, "
        "which the peer does not do; audio: the same work as the peer)",
    )
    ap.add_argument(
        "--peer-onnx",
        choices=("service", "indexer"),
        default="service",
        help="ONNX Runtime settings of the raw peer: the API's defaults (1 thread, no spinning) or the indexer's",
    )
    ap.add_argument("--rebuild", action="store_true", help="rebuild the fixture even if it matches")
    ap.add_argument("--build-only", action="store_true", help="build (or check) the fixture and stop")
    ap.add_argument("--quick", action="store_true", help="smoke run: 20k vectors, 40 requests, c=1,4")
    args = ap.parse_args(argv)
    q = args.quick
    args.n = args.n or (20_000 if q else 1_000_000)
    args.requests = args.requests or (40 if q else 2000)
    args.concurrency = args.concurrency or ("1,4" if q else "1,8,64")
    args.warmup = args.warmup if args.warmup is not None else (5 if q else 50)
    args.rounds = args.rounds or (2 if q else 10)
    args.wait_quiet = args.wait_quiet if args.wait_quiet is not None else (0.0 if q else 30.0)
    if q:
        args.hit_set = min(args.hit_set, 8)
    res = run(args)
    if args.build_only:
        return 0
    report.print_report(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
