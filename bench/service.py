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
at a time; timed in two blocks, right before and right after the service's concurrency-1
cache-miss phase, on the same texts. Overhead = service p50 (c=1, misses) / raw p50 - 1.

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
import asyncio
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote_plus

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MODEL = REPO / "models" / "clapsearch-sfx-v1"
COLLECTION = "bench"
K = 10
FIXTURE_FORMAT = 1
OVERHEAD_TARGET = 0.20
QUIET_PCT = 10.0          # a round is "quiet" when other processes took < 10 % of the CPUs meanwhile

# ----------------------------------------------------------------------------- query texts
SOUNDS = [
    "dog barking", "rain on a tin roof", "glass breaking", "door slamming", "footsteps on gravel",
    "thunder rumbling", "birds singing", "car engine starting", "church bells", "waves crashing",
    "a baby crying", "wind howling", "fire crackling", "a cat meowing", "a helicopter passing",
    "keys jingling", "a clock ticking", "water dripping", "a motorcycle revving", "applause",
    "a train horn", "a siren wailing", "a drum roll", "a wooden creak", "paper rustling",
    "a gunshot", "an explosion", "a phone ringing", "typing on a keyboard", "a kettle whistling",
    "a cow mooing", "a horse galloping", "a rooster crowing", "frogs croaking", "crickets chirping",
    "a stream flowing", "a waterfall", "heavy traffic", "a jet plane flying over", "a lawn mower",
    "a chainsaw", "a hammer hitting a nail", "a saw cutting wood", "a drill", "coins dropping",
    "a zipper", "a doorbell", "a car horn honking", "tyres screeching", "a crowd cheering",
    "a whistle blowing", "a sword clash", "a laser zap", "a magic chime", "a bubble popping",
    "a balloon bursting", "a squeaky toy", "a bass drum", "a snare hit", "a cymbal crash",
    "a piano note", "a guitar strum", "a bell ringing", "a gong", "a toilet flushing",
    "a shower running", "dishes clattering", "a microwave beep", "a vacuum cleaner", "a fan humming",
    "an owl hooting", "a wolf howling", "a lion roaring", "an elephant trumpeting", "bees buzzing",
    "a mosquito whine", "a seagull calling", "ducks quacking", "a goat bleating", "a pig grunting",
]
ADJECTIVES = ["loud", "distant", "soft", "close", "muffled", "echoing", "short", "long", "sharp",
              "deep", "quiet", "metallic", "wet", "dry", "heavy", "light", "rhythmic", "sudden",
              "repeated", "low"]
PLACES = ["in the rain", "at night", "indoors", "outdoors", "in a forest", "in a city street",
          "in a small room", "in a large hall", "far away", "up close", "in a cave", "on a farm",
          "by the sea", "in a kitchen", "in a garage", "underwater", "in a car", "in the morning",
          "in a stadium", "in a factory"]
CAPTION_TEMPLATES = ["the sound of {}", "{}"]


def caption_texts() -> list[str]:
    """The captions whose text embeddings anchor the synthetic clusters."""
    return [t.format(s) for s in SOUNDS for t in CAPTION_TEMPLATES]


def query_texts(seed: int = 0):
    """An endless stream of distinct queries: adjective x sound x place (32,000, shuffled), then
    the same with ' take N' appended."""
    combos = [f"{a} {s} {p}" for a in ADJECTIVES for s in SOUNDS for p in PLACES]
    random.Random(seed).shuffle(combos)
    yield from combos
    take = 2
    while True:
        for c in combos:
            yield f"{c} take {take}"
        take += 1


# ----------------------------------------------------------------------------- machine and CPU accounting
# The machine-load helpers are bench/index.py's (one definition for the benchmarks).
from index import _busy_jiffies, _loadavg, wait_quiet  # noqa: E402
from index import machine_info as index_machine_info  # noqa: E402


def _tree(pid: int):
    import psutil

    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.Error:
        return []


def tree_rss(pid: int) -> int:
    import psutil

    total = 0
    for p in _tree(pid):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def tree_cpu(pid: int | None) -> float:
    import psutil

    if pid is None:
        return 0.0
    total = 0.0
    for p in _tree(pid):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class CpuWindow:
    """CPU seconds used by everything except this script, its children and the server tree."""

    def __init__(self, server_pid: int | None):
        self.server_pid = server_pid

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.b0 = _busy_jiffies()
        self.own0 = self._own()
        return self

    def _own(self) -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)   # finished load generators
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + tree_cpu(self.server_pid)

    def __exit__(self, *exc):
        hz, ncpu = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
        self.wall = time.perf_counter() - self.t0
        self.own_cpu = self._own() - self.own0
        self.other_cpu = max(0.0, (_busy_jiffies() - self.b0) / hz - self.own_cpu)
        self.other_pct = 100.0 * self.other_cpu / max(1e-9, self.wall * ncpu)
        return False

    def record(self) -> dict:
        return {"other_cpu_s": round(self.other_cpu, 2), "other_cpu_pct": round(self.other_pct, 1),
                "own_cpu_s": round(self.own_cpu, 2), "wall_s": round(self.wall, 2)}


def machine_info() -> dict:
    """bench/index.py's machine record plus the serving stack's versions."""
    info = index_machine_info()
    info["loadavg_start"] = _loadavg()
    versions = {}
    for name in ("numpy", "faiss", "onnxruntime", "fastapi", "starlette", "uvicorn", "httpx", "redis",
                 "sqlalchemy", "pydantic"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:
            pass
    info["versions"] = versions
    return info


def code_state() -> dict:
    """Which service/indexer code was measured: the commit and whether those folders differ from it."""
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    dirty = git("status", "--porcelain", "--", "service", "indexer")
    return {"commit": git("rev-parse", "--short", "HEAD"), "subject": git("log", "-1", "--format=%s")[:120],
            "service_or_indexer_uncommitted": [line[3:] for line in dirty.splitlines()]}


def _pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def summarize(latencies_ms: list[float]) -> dict:
    return {"n": len(latencies_ms), "p50_ms": round(_pct(latencies_ms, 50), 3),
            "p90_ms": round(_pct(latencies_ms, 90), 3), "p99_ms": round(_pct(latencies_ms, 99), 3),
            "max_ms": round(max(latencies_ms), 3) if latencies_ms else None,
            "mean_ms": round(sum(latencies_ms) / len(latencies_ms), 3) if latencies_ms else None}


# ----------------------------------------------------------------------------- fixture
def _open_store(home: Path):
    from indexer.settings import IndexerSettings
    from indexer.store.store import Store

    # explicit values: the caller's CLAPSEARCH_* environment must not redirect the fixture
    settings = IndexerSettings(home=home, database_url=None, index_dir=None, model=MODEL, model_variant=None)
    return Store.open(settings, model=MODEL)


def _anchored_generator(n: int, anchors, seed: int, weight: float):
    import numpy as np

    sys.path.insert(0, str(REPO / "bench"))
    from index import Clustered   # bench/index.py's generator

    class Anchored(Clustered):
        """Clustered, with every cluster pulled towards one caption's text embedding."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            rng = np.random.default_rng([seed, 0xA2C])
            self.anchor_of = rng.integers(len(anchors), size=self.clusters)

        def draw(self, count, rng):
            c = rng.choice(self.clusters, size=count, p=self.weights)
            z = rng.standard_normal((count, self.latent), dtype=np.float32)
            z *= self.spread[c, None] * self.axis_sd[c]
            z += self.centres[c]
            x = z @ self.lift
            scale = self.noise * np.linalg.norm(x, axis=1, keepdims=True) / np.sqrt(self.dim)
            x += scale * rng.standard_normal((count, self.dim), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            x += weight * anchors[self.anchor_of[c]]
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            return x

    gen = Anchored(anchors.shape[1], max(1, n // 40), seed=seed)
    gen.description = (gen.description + f"; then each cluster is pulled towards the text embedding of one of "
                       f"{len(anchors)} sound captions (x + {weight} * caption, renormalised)")
    return gen


def _heartbeat(label: str, t0: float, stop: threading.Event, every: float = 30.0) -> None:
    while not stop.wait(every):
        with open("/proc/self/status") as fh:
            rss = next((int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:")), 0)
        print(f"  ... {label}: {time.perf_counter() - t0:.0f} s, RSS {rss / 2**20:,.0f} MiB, "
              f"load {_loadavg()}", flush=True)


def build_fixture(home: Path, n: int, seed: int, *, rebuild: bool = False) -> dict:
    """The fixture's stamp; builds it (database rows + published index) unless a matching one exists."""
    import numpy as np
    from sqlalchemy import insert

    from indexer.models.manifest import load_manifest
    from indexer.store import catalog
    from indexer.store.schema import STATUS_INDEXED, File, utcnow, vector_bytes

    stamp_path = home / "fixture.json"
    fingerprint = load_manifest(MODEL).fingerprint
    wanted = {"format": FIXTURE_FORMAT, "n": n, "seed": seed, "model": str(MODEL.relative_to(REPO)),
              "model_fingerprint": fingerprint, "collection": COLLECTION}
    if stamp_path.exists() and not rebuild:
        stamp = json.loads(stamp_path.read_text())
        if {k: stamp.get(k) for k in wanted} == wanted:
            print(f"fixture: reusing {home} ({n:,} vectors, built {stamp['built_at']} in "
                  f"{stamp['build_s']:.0f} s)", flush=True)
            return stamp | {"reused": True}
        print(f"fixture: {home} was built with {({k: stamp.get(k) for k in wanted})}; rebuilding", flush=True)
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    t_all = time.perf_counter()
    load0 = _loadavg()
    store = _open_store(home)
    try:
        encoder = store.encoder()
        captions = caption_texts()
        anchors = encoder.embed_text(captions)
        weight = 0.8
        gen = _anchored_generator(n, anchors, seed, weight)
        collection = store.open_collection(COLLECTION)
        with store.db.session() as s:
            generation = catalog.next_generation(s, collection.id)

        t0 = time.perf_counter()
        chunk, gen_s = 20_000, 0.0
        rng_meta = np.random.default_rng([seed, 7])
        now = utcnow()
        for ci, lo in enumerate(range(0, n, chunk)):
            hi = min(n, lo + chunk)
            g0 = time.perf_counter()
            x = gen.draw(hi - lo, np.random.default_rng([seed, 1, ci]))
            gen_s += time.perf_counter() - g0
            duration = rng_meta.uniform(0.3, 30.0, size=hi - lo)
            rows = [dict(collection_id=collection.id, path=f"lib/pack_{i // 1000:04d}/sfx_{i:07d}.wav",
                         size=int(44 + d * 48_000 * 2), mtime_ns=1_700_000_000_000_000_000 + i,
                         content_hash=None, duration_s=round(float(d), 3), format="WAV", subtype="PCM_16",
                         sample_rate=48_000, channels=1, tags=None, status=STATUS_INDEXED,
                         error_code=None, error=None, vector=vector_bytes(x[j]), n_segments=0,
                         generation=generation, updated_at=now)
                    for j, (i, d) in enumerate(zip(range(lo, hi), duration))]
            with store.db.engine.begin() as conn:
                conn.execute(insert(File), rows)
            if ci % 10 == 0 or hi == n:
                print(f"  rows {hi:,}/{n:,} ({time.perf_counter() - t0:.0f} s)", flush=True)
        insert_s = time.perf_counter() - t0

        print(f"  publishing (plan, train, add, tune) ...", flush=True)
        t0 = time.perf_counter()
        stop = threading.Event()
        threading.Thread(target=_heartbeat, args=("publish", t0, stop), daemon=True).start()
        try:
            with store.lock(COLLECTION, wait=True):
                (result,) = store.publish(store.collection(COLLECTION))
        finally:
            stop.set()
        publish_s = time.perf_counter() - t0
        from indexer.store.vector_index import VectorIndex

        index = VectorIndex.load(result.version.folder)
        index_file = Path(result.version.folder) / "index.faiss"
        db_path = home / "clapsearch.db"
        stamp = wanted | {
            "built_at": time.strftime("%Y-%m-%d %H:%M:%S"), "build_s": round(time.perf_counter() - t_all, 1),
            "insert_s": round(insert_s, 1), "data_generation_s": round(gen_s, 1), "publish_s": round(publish_s, 1),
            "publish_mode": result.mode, "plan": result.plan.to_dict() if result.plan else None,
            "index": {"describe": index.describe(), "params": index.params,
                      "train_s": index.tuning.get("train_seconds"), "add_s": index.tuning.get("add_seconds"),
                      "ntotal": index.ntotal, "version": result.version.version,
                      "file_bytes": index_file.stat().st_size if index_file.exists() else None},
            "database_bytes": db_path.stat().st_size if db_path.exists() else None,
            "generator": gen.description, "captions": len(captions), "loadavg_before": load0,
            "loadavg_after": _loadavg()}
        del index
    finally:
        store.close()
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    print(f"fixture: built {home} in {stamp['build_s']:.0f} s (rows {stamp['insert_s']:.0f} s, publish "
          f"{stamp['publish_s']:.0f} s: {stamp['index']['describe']})", flush=True)
    return stamp | {"reused": False}


def warm_database(home: Path) -> dict:
    """Read the SQLite file once so that the metadata join runs from the OS page cache, as on a
    server that has been up for a while (cold, each hit costs a random disk read: ~0.2 ms here)."""
    path = home / "clapsearch.db"
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while fh.read(8 << 20):
            pass
    seconds = time.perf_counter() - t0
    print(f"database file read into the page cache: {path.stat().st_size / 2**30:.2f} GiB in {seconds:.1f} s", flush=True)
    return {"file_bytes": path.stat().st_size, "read_s": round(seconds, 2)}


def index_file_bytes(home: Path) -> int:
    files = sorted((home / "indexes").rglob("index.faiss"))
    return max((f.stat().st_size for f in files), default=0)


def model_file_bytes() -> dict:
    from indexer.models.manifest import load_manifest

    manifest = load_manifest(MODEL)
    files = manifest.variants[manifest.default_variant]
    out = {"variant": manifest.default_variant}
    for tower in ("audio", "text"):
        out[f"{tower}_bytes"] = (MODEL / getattr(files, tower)).stat().st_size
    out["total_bytes"] = out["audio_bytes"] + out["text_bytes"]
    return out


# ----------------------------------------------------------------------------- the peer
class Peer:
    """encode + search + metadata join in this process, one query at a time."""

    def __init__(self, home: Path):
        from indexer.search import Searcher

        self.store = _open_store(home)
        self.encoder = self.store.encoder()
        self.searcher = Searcher(self.store, COLLECTION)

    def run(self, texts: list[str]) -> dict:
        embed_ms, total_ms, short = [], [], 0
        for text in texts:
            t0 = time.perf_counter()
            vector = self.encoder.embed_text([text])
            t1 = time.perf_counter()
            hits = self.searcher.search_vectors(vector, k=K)[0]
            t2 = time.perf_counter()
            embed_ms.append((t1 - t0) * 1e3)
            total_ms.append((t2 - t0) * 1e3)
            short += len(hits) < K
        search_ms = [t - e for t, e in zip(total_ms, embed_ms)]
        return {"total": summarize(total_ms), "embed_p50_ms": round(_pct(embed_ms, 50), 3),
                "search_and_join_p50_ms": round(_pct(search_ms, 50), 3), "short_results": short,
                "_latencies": total_ms}

    def close(self) -> None:
        self.store.close()


# ----------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(port: int, path: str, timeout: float = 5.0):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (OSError, ValueError):
        return None, None


class RssSampler:
    def __init__(self, pid: int, every: float = 0.5):
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "RssSampler":
        self._thread.start()
        return self

    def sample(self) -> int:
        rss = tree_rss(self.pid)
        self.samples.append((time.perf_counter() - self.t0, rss))
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def since(self, t: float) -> list[int]:
        return [rss for ts, rss in self.samples if ts >= t]


def import_baseline_rss() -> int:
    """RSS of a fresh interpreter that imported the app (no model, no index, no database)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import service.app\n"
            "print(int([l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1]) * 1024)")
    out = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True, text=True,
                         timeout=300, cwd=REPO)
    if out.returncode != 0:
        return 0
    return int(out.stdout.strip().splitlines()[-1])


def start_server(home: Path, redis_url: str | None, log_path: Path, ready_timeout: float = 600.0,
                 extra_env: dict[str, str] | None = None):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAPSEARCH_")}
    env.update(CLAPSEARCH_HOME=str(home), CLAPSEARCH_MODEL=str(MODEL), CLAPSEARCH_DEFAULT_COLLECTION=COLLECTION,
               CLAPSEARCH_RATE_LIMIT_PER_MINUTE="0", PYTHONUNBUFFERED="1")
    if redis_url:
        env["CLAPSEARCH_REDIS_URL"] = redis_url
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"]
    log = open(log_path, "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    sampler = RssSampler(proc.pid).start()
    sampler.sample()
    ready_s = vocab_s = None
    detail = None
    while time.perf_counter() - t0 < ready_timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} during start-up; see {log_path}:\n"
                             + log_path.read_text()[-3000:])
        status, body = _get_json(port, "/readyz", timeout=2.0)
        if status == 200:
            detail = body
            ready_s = ready_s or time.perf_counter() - t0
            vocab = (body or {}).get("vocabulary") or {}
            if vocab.get("embedded", True):   # the label vocabulary is embedded in a background thread
                vocab_s = time.perf_counter() - t0
                break
        time.sleep(0.2)
    else:
        proc.terminate()
        raise SystemExit(f"the server was not ready within {ready_timeout:.0f} s; see {log_path}")
    rss_ready = sampler.sample()
    return {"proc": proc, "port": port, "sampler": sampler, "log": log, "command": cmd,
            "ready_s": round(ready_s, 2), "ready_with_vocabulary_s": round(vocab_s, 2), "rss_ready": rss_ready,
            "readyz": detail}


def stop_server(server: dict) -> None:
    proc = server["proc"]
    server["sampler"].stop()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    server["log"].close()


# ----------------------------------------------------------------------------- the load generator (own process)
async def _raw_connect(host: str, port: int):
    return await asyncio.open_connection(host, port)


async def _raw_request(conn, target: str):
    reader, writer = conn
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    i = lower.find(b"\r\ncontent-length:")
    if i >= 0:
        j = lower.index(b"\r\n", i + 2)
        body = await reader.readexactly(int(lower[i + 17: j]))
    elif b"transfer-encoding: chunked" in lower:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        raise RuntimeError("response without length")
    keep = b"connection: close" not in lower
    return status, body, keep


async def _loadgen(spec: dict) -> dict:
    host, port, conc = "127.0.0.1", spec["port"], spec["concurrency"]
    use_httpx = spec.get("client") == "httpx"
    client = None
    if use_httpx:
        import httpx

        client = httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=60.0,
                                   limits=httpx.Limits(max_connections=conc, max_keepalive_connections=conc))

    async def one(conn, target):
        if use_httpx:
            r = await client.get(target)
            return r.status_code, r.content, True, conn
        if conn is None:
            conn = await _raw_connect(host, port)
        status, body, keep = await _raw_request(conn, target)
        if not keep:
            conn[1].close()
            conn = None
        return status, body, keep, conn

    async def run(targets: list[str], record: bool):
        nxt = 0
        lat, took, statuses, errors = [], [], {}, []
        cached = short = 0

        async def worker(conn):
            nonlocal nxt, cached, short
            while nxt < len(targets):
                target = targets[nxt]
                nxt += 1
                t0 = time.perf_counter()
                try:
                    status, body, _, conn = await one(conn, target)
                    err = None
                except Exception as exc:   # a connection error is an error, never a crash
                    status, body, err = -1, b"", f"{type(exc).__name__}: {exc}"
                    if conn is not None and not use_httpx:
                        conn[1].close()
                    conn = None
                t1 = time.perf_counter()
                if not record:
                    continue
                lat.append((t1 - t0) * 1e3)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 200:
                    try:
                        doc = json.loads(body)
                        took.append(float(doc.get("took_ms", 0.0)))
                        cached += bool(doc.get("cached"))
                        if len(doc.get("results", ())) < spec.get("expect_results", K):
                            short += 1
                    except ValueError as exc:
                        err = f"bad JSON: {exc}"
                elif err is None:
                    err = f"HTTP {status}: {body[:300].decode(errors='replace')}"
                if err is not None and len(errors) < 10:
                    errors.append(err)
            if conn is not None and not use_httpx:
                conn[1].close()

        conns = [None] * conc
        if not use_httpx:
            conns = [await _raw_connect(host, port) for _ in range(conc)]
        c0 = time.process_time()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        wall = time.perf_counter() - t0
        return {"latencies_ms": lat, "took_ms": took, "statuses": statuses, "errors": errors, "cached": cached,
                "short_results": short, "wall_s": wall, "cpu_s": time.process_time() - c0}

    async def metrics_text() -> str:
        conn = await _raw_connect(host, port)
        try:
            status, body, _ = await _raw_request(conn, "/metrics")
        finally:
            conn[1].close()
        return body.decode(errors="replace") if status == 200 else ""

    if spec.get("warmup"):
        await run(spec["warmup"], record=False)
    before = await metrics_text() if spec.get("metrics") else ""
    out = await run(spec["targets"], record=True)
    if spec.get("metrics"):
        out["metrics_before"], out["metrics_after"] = before, await metrics_text()
    if client is not None:
        await client.aclose()
    return out


def loadgen_main() -> int:
    spec = json.loads(sys.stdin.read())
    out = asyncio.run(_loadgen(spec))
    sys.stdout.write(json.dumps(out))
    return 0


def run_load(port: int, texts: list[str], concurrency: int, *, warmup: list[str], client: str,
             metrics: bool = False) -> dict:
    target = lambda t: f"/v1/search?q={quote_plus(t)}&limit={K}"
    spec = {"port": port, "concurrency": concurrency, "client": client, "targets": [target(t) for t in texts],
            "warmup": [target(t) for t in warmup], "expect_results": K, "metrics": metrics}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--loadgen"], input=json.dumps(spec),
                         capture_output=True, text=True, timeout=3600, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"load generator failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)


# ----------------------------------------------------------------------------- the run
def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    client.flushdb()
    client.close()


def redis_reachable(url: str) -> bool:
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


def run(args) -> dict:
    conc_levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    home = (args.home or REPO / "runs" / "bench-service" / f"home-{args.n}").resolve()
    work = home.parent
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    t_run = time.perf_counter()

    # --- fixture
    with CpuWindow(None) as cw:
        fixture = build_fixture(home, args.n, args.seed, rebuild=args.rebuild)
    fixture["this_run"] = cw.record() if not fixture.get("reused") else None
    if args.build_only:
        return {"fixture": fixture}

    redis_url = None if args.no_redis else args.redis_url
    if redis_url:
        if not redis_reachable(redis_url):
            raise SystemExit(f"Redis {redis_url} is not reachable (use --no-redis for the embedded default)")
        flush_redis(redis_url)

    # --- texts (deterministic, disjoint per use)
    stream = query_texts(args.seed)
    take = lambda m: [next(stream) for _ in range(m)]
    warm_n = args.warmup
    peer_texts = take(args.requests)                 # = the c=1 miss phase's texts
    miss_texts = {c: (peer_texts if c == 1 else take(args.requests)) for c in conc_levels}
    miss_warm = {c: take(max(warm_n, c * 2)) for c in conc_levels}
    hit_set = take(args.hit_set)
    peer_warm = take(warm_n)

    baseline_rss = import_baseline_rss()
    page_cache = warm_database(home) if args.warm_db else None
    extra_env = dict(kv.split("=", 1) for kv in args.server_env)

    # --- server
    print(f"starting the server (redis: {redis_url or 'off'}{', env ' + str(extra_env) if extra_env else ''}) ...",
          flush=True)
    server = start_server(home, redis_url, work / "server.log", extra_env=extra_env)
    proc, port, sampler = server["proc"], server["port"], server["sampler"]
    print(f"server ready in {server['ready_s']:.1f} s (vocabulary embedded at {server['ready_with_vocabulary_s']:.1f} s), "
          f"RSS {server['rss_ready'] / 2**20:,.0f} MiB", flush=True)
    phases, peer_rounds, peer_lat = [], [], []
    try:
        # --- peer, loaded beside the idle server
        peer = Peer(home)
        peer.run(peer_warm)

        # first contact: one warm-up pass through the service so that "start" RSS is after load
        run_load(port, take(max(warm_n, 8)), 1, warmup=[], client=args.client)
        t_start = time.perf_counter() - sampler.t0
        rss_start = sampler.sample()

        def phase(kind: str, c: int, texts: list[str], warm: list[str]):
            waited = wait_quiet(args.wait_quiet)
            load = _loadavg()
            with CpuWindow(proc.pid) as w:
                r = run_load(port, texts, c, warmup=warm, client=args.client, metrics=True)
            record_phase(kind, c, r, w.record(), waited, load)

        def record_phase(kind: str, c: int, r: dict, window: dict, waited: float, load: str, extra: dict | None = None):
            lat = r["latencies_ms"]
            errors = sum(v for k, v in r["statuses"].items() if k != "200") + r["short_results"]
            row = {"phase": kind, "concurrency": c, "requests": len(lat), "errors": errors,
                   "statuses": r["statuses"], "error_samples": r["errors"], "short_results": r["short_results"],
                   **{k: v for k, v in summarize(lat).items() if k != "n"},
                   "qps": round(len(lat) / r["wall_s"], 1), "wall_s": round(r["wall_s"], 2),
                   "cached_answers": r["cached"], "server_took_ms_p50": round(_pct(r["took_ms"], 50), 3),
                   "server_took_ms_p99": round(_pct(r["took_ms"], 99), 3),
                   "loadgen_cpu_ms_per_request": round(1e3 * r["cpu_s"] / max(1, len(lat)), 3),
                   "server_stages": stage_deltas(r.get("metrics_before", ""), r.get("metrics_after", ""), len(lat)),
                   "rss_end": sampler.sample(), "waited_s": round(waited, 1), "loadavg_before": load,
                   **window, **(extra or {})}
            phases.append(row)
            print(f"{kind:>4} c={c:<3} {row['requests']:>5} req  errors {errors}  p50 {row['p50_ms']:7.2f}  "
                  f"p90 {row['p90_ms']:7.2f}  p99 {row['p99_ms']:7.2f} ms  {row['qps']:7.1f} q/s  cached "
                  f"{row['cached_answers']}  (other processes {row['other_cpu_pct']:.1f} % CPU)", flush=True)
            if row["error_samples"]:
                print(f"     errors: {row['error_samples'][:3]}", flush=True)

        def interleaved_c1():
            """c=1 misses and the peer in alternating rounds on the same texts, so that both see the
            same machine (the other tenants' load on this VM changes from minute to minute)."""
            rounds = max(1, min(args.rounds, len(peer_texts)))
            size = -(-len(peer_texts) // rounds)
            merged = {"latencies_ms": [], "took_ms": [], "statuses": {}, "errors": [], "cached": 0,
                      "short_results": 0, "wall_s": 0.0, "cpu_s": 0.0}
            totals = {"other_cpu_s": 0.0, "own_cpu_s": 0.0, "wall_s": 0.0}
            waited_all, load = 0.0, _loadavg()
            m_before = _get_text(port, "/metrics")
            for r_i in range(rounds):
                chunk = peer_texts[r_i * size:(r_i + 1) * size]
                warm = [next(stream) for _ in range(5)]
                if not chunk:
                    break
                waited_all += wait_quiet(args.wait_quiet / rounds)
                row = {"round": r_i, "queries": len(chunk), "first": "peer" if r_i % 2 == 0 else "service"}
                for who in (("peer", "service") if r_i % 2 == 0 else ("service", "peer")):
                    with CpuWindow(proc.pid) as w:
                        if who == "peer":
                            peer.run(warm)
                            res = peer.run(chunk)
                        else:
                            res = run_load(port, chunk, 1, warmup=warm, client=args.client)
                    if who == "peer":
                        lat = res.pop("_latencies")
                        peer_lat.extend(lat)
                        row["peer_p50_ms"] = res["total"]["p50_ms"]
                        row["peer_embed_p50_ms"] = res["embed_p50_ms"]
                        row["peer_search_and_join_p50_ms"] = res["search_and_join_p50_ms"]
                        row["peer_other_cpu_pct"] = w.record()["other_cpu_pct"]
                    else:
                        for key in ("latencies_ms", "took_ms", "errors"):
                            merged[key].extend(res[key])
                        for key in ("cached", "short_results", "wall_s", "cpu_s"):
                            merged[key] += res[key]
                        for k, v in res["statuses"].items():
                            merged["statuses"][k] = merged["statuses"].get(k, 0) + v
                        for k in totals:
                            totals[k] += w.record()[k]
                        row["service_p50_ms"] = round(_pct(res["latencies_ms"], 50), 3)
                        row["service_other_cpu_pct"] = w.record()["other_cpu_pct"]
                row["overhead_p50"] = round(row["service_p50_ms"] / row["peer_p50_ms"] - 1, 4)
                peer_rounds.append(row)
                print(f"  c=1 round {r_i}: peer p50 {row['peer_p50_ms']:.2f} ms, service p50 {row['service_p50_ms']:.2f} ms "
                      f"({100 * row['overhead_p50']:+.1f} %); other processes {row['peer_other_cpu_pct']:.0f} / "
                      f"{row['service_other_cpu_pct']:.0f} % CPU", flush=True)
            merged["metrics_before"], merged["metrics_after"] = m_before, _get_text(port, "/metrics")
            ncpu = os.cpu_count() or 1
            window = {"other_cpu_s": round(totals["other_cpu_s"], 2),
                      "other_cpu_pct": round(100 * totals["other_cpu_s"] / max(1e-9, totals["wall_s"] * ncpu), 1),
                      "own_cpu_s": round(totals["own_cpu_s"], 2), "wall_s": round(totals["wall_s"], 2)}
            record_phase("miss", 1, merged, window, waited_all, load,
                         {"interleaved_with_peer_rounds": len(peer_rounds)})

        # --- misses: c=1 interleaved with the peer on the same texts, then higher concurrency
        for c in conc_levels:
            if c == 1:
                interleaved_c1()
            else:
                phase("miss", c, miss_texts[c], miss_warm[c])
        if 1 not in conc_levels:
            res = peer.run(peer_texts)
            peer_lat.extend(res.pop("_latencies"))
        peer.close()
        del peer

        # --- hits: the hit set asked once (fills the result cache), then repeated
        run_load(port, hit_set, 1, warmup=[], client=args.client)
        time.sleep(0.5)                                  # the cache writes run after the response
        for c in conc_levels:
            texts = [hit_set[i % len(hit_set)] for i in range(args.hit_requests or args.requests)]
            phase("hit", c, texts, [hit_set[i % len(hit_set)] for i in range(max(warm_n, 2 * c))])

        # the load generator's own cost: /healthz is the cheapest answer the app gives
        health = {kind: run_load_health(port, kind) for kind in ("raw", "httpx")}
        metrics_text = _get_text(port, "/metrics")
        rss_end = sampler.sample()
    finally:
        stop_server(server)

    # --- derived figures
    import numpy as np

    peer_sum = summarize(peer_lat)
    c1 = next((p for p in phases if p["phase"] == "miss" and p["concurrency"] == 1), None)
    overhead = {}
    if c1 is not None and peer_rounds:
        per_round = [r["overhead_p50"] for r in peer_rounds]
        quiet = [r["overhead_p50"] for r in peer_rounds
                 if r["peer_other_cpu_pct"] < QUIET_PCT and r["service_other_cpu_pct"] < QUIET_PCT]
        overhead = {"p50": round(float(np.median(per_round)), 4),
                    "p50_quiet_rounds": round(float(np.median(quiet)), 4) if quiet else None,
                    "quiet_rounds": len(quiet),
                    "p50_pooled": round(c1["p50_ms"] / peer_sum["p50_ms"] - 1, 4),
                    "p99": round(c1["p99_ms"] / peer_sum["p99_ms"] - 1, 4),
                    "p50_ms": round(c1["p50_ms"] - peer_sum["p50_ms"], 3),
                    "p50_per_round": per_round,
                    "definition": "median over interleaved rounds of service p50 / peer p50 - 1 (same texts, "
                                  "c=1, cache misses); p50_pooled and p99 from all rounds' latencies",
                    "inside_app_p50_ms": c1["server_took_ms_p50"]}
    during = sampler.since(t_start)
    peak = max([rss for _, rss in sampler.samples] or [0])
    model = model_file_bytes()
    idx_bytes = index_file_bytes(home)
    memory = {
        "rss_import_baseline": baseline_rss,
        "rss_ready": server["rss_ready"], "rss_start": rss_start, "rss_peak": peak,
        "rss_peak_during_load": max(during or [0]), "rss_end": rss_end, "growth_bytes": rss_end - rss_start,
        "growth_pct": round(100.0 * (rss_end - rss_start) / max(1, rss_start), 2),
        "model_file_bytes": model["total_bytes"], "model": model, "index_file_bytes": idx_bytes,
        "overhead_bytes": rss_end - model["total_bytes"] - idx_bytes,
        "samples": len(sampler.samples), "sample_every_s": sampler.every,
        "timeline": [(round(t, 1), rss) for t, rss in sampler.samples[:: max(1, len(sampler.samples) // 120)]],
    }
    memory["stable"] = bool(abs(memory["growth_bytes"]) < max(64 * 2**20, 0.05 * rss_start))
    errors = sum(p["errors"] for p in phases)
    met = bool(overhead and overhead["p50"] < OVERHEAD_TARGET and errors == 0)
    return {
        "command": " ".join([".venv/bin/python", "bench/service.py", *sys.argv[1:]]),
        "machine": machine | {"loadavg_end": _loadavg()},
        "run_s": round(time.perf_counter() - t_run, 1),
        "code": code_state(),
        "fixture": fixture,
        "database_page_cache": page_cache,
        "server": {"command": " ".join(server["command"][1:]), "redis": redis_url, "extra_env": extra_env,
                   "ready_s": server["ready_s"],
                   "ready_with_vocabulary_s": server["ready_with_vocabulary_s"],
                   "readyz": server["readyz"], "metrics_excerpt": _metrics_excerpt(metrics_text)},
        "client": {"kind": args.client, "healthz": health},
        "peer": {"what": "ClapEncoder.embed_text([q]) + Searcher.search_vectors(v, k=10) in-process, sequential",
                 "queries": len(peer_lat), **peer_sum, "rounds": peer_rounds},
        "phases": phases,
        "overhead": overhead,
        "memory": memory,
        "errors": errors,
        "target": {"overhead_p50_max": OVERHEAD_TARGET, "overhead_p50": overhead.get("p50"), "errors": errors,
                   "memory_stable": memory["stable"], "met": met},
    }


def run_load_health(port: int, client: str, n: int = 500) -> dict:
    spec = {"port": port, "concurrency": 1, "client": client, "targets": ["/healthz"] * n, "warmup": ["/healthz"] * 20,
            "expect_results": 0}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--loadgen"], input=json.dumps(spec),
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    if out.returncode != 0:
        return {"error": out.stderr[-500:]}
    r = json.loads(out.stdout)
    lat = r["latencies_ms"]
    return {"requests": len(lat), **{k: v for k, v in summarize(lat).items() if k != "n"},
            "loadgen_cpu_ms_per_request": round(1e3 * r["cpu_s"] / max(1, len(lat)), 3),
            "statuses": r["statuses"]}


def _get_text(port: int, path: str) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.read().decode(errors="replace")
    except Exception as exc:
        return f"# {type(exc).__name__}: {exc}"


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("clapsearch_"):
            try:
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
            except ValueError:
                pass
    return out


def stage_deltas(before: str, after: str, requests: int) -> dict:
    """What the server's own metrics say about a phase: per stage, seconds summed over the phase
    per request (ms) and the number of observations; the inference batches and their mean size."""
    if not before or not after:
        return {}
    b, a = _samples(before), _samples(after)
    d = lambda key: a.get(key, 0.0) - b.get(key, 0.0)
    out = {}
    for key in a:
        if key.startswith("clapsearch_stage_seconds_sum{"):
            stage = key.split('stage="')[1].split('"')[0]
            count = d(key.replace("_sum{", "_count{"))
            if count:
                out[stage] = {"ms_per_request": round(1e3 * d(key) / max(1, requests), 3), "calls": int(count),
                              "ms_per_call": round(1e3 * d(key) / count, 3)}
    for key in a:
        if key.startswith("clapsearch_request_seconds_sum{") and 'route="/v1/search"' in key:
            count = d(key.replace("_sum{", "_count{"))
            if count:
                out["middleware_request_ms_mean"] = round(1e3 * d(key) / count, 3)
    batches = d("clapsearch_batch_size_count")
    if batches:
        out["inference_batches"] = int(batches)
        out["mean_batch_size"] = round(d("clapsearch_batch_size_sum") / batches, 2)
    return out


def _metrics_excerpt(text: str) -> dict:
    """Per-stage sums and counts (``*_sum`` / ``*_count`` samples) and the cache counters."""
    return {key: value for key, value in _samples(text).items()
            if key.split("{")[0].endswith(("_sum", "_count")) or "cache" in key.split("{")[0]}


def print_report(res: dict) -> None:
    p, o, m = res["peer"], res["overhead"], res["memory"]
    print()
    print(f"fixture: {res['fixture']['n']:,} vectors, {res['fixture']['index']['describe']}; server "
          f"redis={res['server']['redis'] or 'off'}")
    print(f"raw encode+search (peer): p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms over {p['n']} queries")
    print(f"{'phase':<6}{'conc':>5}{'req':>7}{'err':>5}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'q/s':>9}"
          f"{'cached':>8}{'other CPU':>11}")
    for r in res["phases"]:
        print(f"{r['phase']:<6}{r['concurrency']:>5}{r['requests']:>7}{r['errors']:>5}{r['p50_ms']:>9.2f}"
              f"{r['p90_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['qps']:>9.1f}{r['cached_answers']:>8}"
              f"{r['other_cpu_pct']:>10.1f}%")
    if o:
        print(f"service overhead at c=1 on misses: p50 {100 * o['p50']:+.1f} % ({o['p50_ms']:+.2f} ms), "
              f"p99 {100 * o['p99']:+.1f} %  (target < {100 * OVERHEAD_TARGET:.0f} %: "
              f"{'MET' if o['p50'] < OVERHEAD_TARGET else 'NOT MET'})")
        if o.get("p50_quiet_rounds") is not None:
            print(f"  median over the {o['quiet_rounds']} quiet rounds (other processes < {QUIET_PCT:.0f} % CPU): "
                  f"{100 * o['p50_quiet_rounds']:+.1f} %")
    mib = lambda b: f"{b / 2**20:,.0f} MiB"
    print(f"server RSS: ready {mib(m['rss_ready'])}, start {mib(m['rss_start'])}, peak {mib(m['rss_peak'])}, "
          f"end {mib(m['rss_end'])} (growth {m['growth_pct']:+.1f} %: {'stable' if m['stable'] else 'NOT stable'}); "
          f"model files {mib(m['model_file_bytes'])} + index file {mib(m['index_file_bytes'])}, bare import "
          f"{mib(m['rss_import_baseline'])}")
    for kind, h in res["client"]["healthz"].items():
        if "p50_ms" in h:
            print(f"load generator client {kind}{' (used)' if kind == res['client']['kind'] else ''}: /healthz "
                  f"p50 {h['p50_ms']:.2f} ms, {h['loadgen_cpu_ms_per_request']:.3f} CPU-ms per request")
    print(f"errors: {res['errors']}; target met: {res['target']['met']}")


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
    ap.add_argument("--rounds", type=int, default=None,
                    help="c=1 miss phase and peer interleaved in this many rounds (default 10; --quick 2)")
    ap.add_argument("--no-warm-db", dest="warm_db", action="store_false",
                    help="do not read the database file into the page cache first (cold metadata joins)")
    ap.add_argument("--server-env", action="append", default=[], metavar="K=V",
                    help="extra environment of the server (e.g. OMP_NUM_THREADS=1), recorded in the JSON")
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
    print_report(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
