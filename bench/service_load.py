"""Load for the search service benchmark (``bench/service.py`` describes the run): the raw
in-process peer, the server subprocess, and the load generator, a process of its own (so that it
shares no GIL with the server) that ``bench/service.py --loadgen`` runs."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote_plus

from service_fixture import COLLECTION, MODEL, REPO, K, open_store
from service_report import RssSampler, get_text, pct, summarize

ENTRY = Path(__file__).with_name("service.py")  # runs the load generator with --loadgen


# ----------------------------------------------------------------------------- the peer
class Peer:
    """encode + search + metadata join in this process, one query at a time.

    ``onnx``: "service" runs ONNX Runtime as the API does by default (``ServiceSettings().onnx``:
    one thread per call, no spinning), so the comparison is of the same model calls; "indexer"
    as the indexer CLI does (a thread per core, idle threads spinning), what earlier runs compared
    with. Spinning threads keep a core busy after each call, which slowed the peer's own FAISS
    search after the embedding on this 2-core VM, and everything under load."""

    def __init__(self, home: Path, onnx: str = "service"):
        from indexer.models.encoder import ClapEncoder
        from indexer.search import Searcher
        from service.settings import ServiceSettings

        self.store = open_store(home)
        if onnx == "service":
            store = self.store
            options = ServiceSettings(model=MODEL).onnx
            self.encoder = ClapEncoder(store.model_dir, store.manifest, variant=store.variant, options=options)
        else:
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
        return {
            "total": summarize(total_ms),
            "embed_p50_ms": round(pct(embed_ms, 50), 3),
            "search_and_join_p50_ms": round(pct(search_ms, 50), 3),
            "short_results": short,
            "_latencies": total_ms,
        }

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


def import_baseline_rss() -> int:
    """RSS of a fresh interpreter that imported the app (no model, no index, no database)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import service.app\n"
        "print(int([l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1]) * 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True, text=True, timeout=300, cwd=REPO)
    if out.returncode != 0:
        return 0
    return int(out.stdout.strip().splitlines()[-1])


def start_server(
    home: Path,
    redis_url: str | None,
    log_path: Path,
    ready_timeout: float = 600.0,
    extra_env: dict[str, str] | None = None,
):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAPSEARCH_")}
    env.update(
        CLAPSEARCH_HOME=str(home),
        CLAPSEARCH_MODEL=str(MODEL),
        CLAPSEARCH_DEFAULT_COLLECTION=COLLECTION,
        CLAPSEARCH_RATE_LIMIT_PER_MINUTE="0",
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["CLAPSEARCH_REDIS_URL"] = redis_url
    env.update(extra_env or {})
    cmd = [sys.executable, *"-m uvicorn --factory service.app:create_app --host 127.0.0.1 --port".split(), str(port)]
    cmd += "--workers 1 --log-level warning --no-access-log".split()
    log = open(log_path, "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    sampler = RssSampler(proc.pid).start()
    sampler.sample()
    ready_s = vocab_s = None
    detail = None
    while time.perf_counter() - t0 < ready_timeout:
        if proc.poll() is not None:
            raise SystemExit(
                f"the server exited with {proc.returncode} during start-up; see {log_path}:\n"
                + log_path.read_text()[-3000:]
            )
        status, body = _get_json(port, "/readyz", timeout=2.0)
        if status == 200:
            detail = body
            ready_s = ready_s or time.perf_counter() - t0
            vocab = (body or {}).get("vocabulary") or {}
            if vocab.get("embedded", True):  # the label vocabulary is embedded in a background thread
                vocab_s = time.perf_counter() - t0
                break
        time.sleep(0.2)
    else:
        proc.terminate()
        raise SystemExit(f"the server was not ready within {ready_timeout:.0f} s; see {log_path}")
    rss_ready = sampler.sample()
    return {
        "proc": proc,
        "port": port,
        "sampler": sampler,
        "log": log,
        "command": cmd,
        "ready_s": round(ready_s, 2),
        "ready_with_vocabulary_s": round(vocab_s, 2),
        "rss_ready": rss_ready,
        "readyz": detail,
    }


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
        body = await reader.readexactly(int(lower[i + 17 : j]))
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


class LoadGen:
    """Closed loop: ``concurrency`` connections with keep-alive, each sending its next request as
    soon as the previous answer arrived. ``spec``: port, concurrency, client ("raw" or "httpx"),
    targets, warmup, expect_results, metrics (scrape /metrics before and after)."""

    def __init__(self, spec: dict):
        self.spec, self.host, self.port, self.conc = spec, "127.0.0.1", spec["port"], spec["concurrency"]
        self.client = None
        if spec.get("client") == "httpx":
            import httpx

            self.client = httpx.AsyncClient(
                base_url=f"http://{self.host}:{self.port}",
                timeout=60.0,
                limits=httpx.Limits(max_connections=self.conc, max_keepalive_connections=self.conc),
            )

    def _close(self, conn) -> None:
        if conn is not None and self.client is None:
            conn[1].close()

    async def _one(self, conn, target: str):
        """(status, body, the connection to use next)."""
        if self.client is not None:
            r = await self.client.get(target)
            return r.status_code, r.content, conn
        if conn is None:
            conn = await _raw_connect(self.host, self.port)
        status, body, keep = await _raw_request(conn, target)
        if not keep:
            conn[1].close()
            conn = None
        return status, body, conn

    def _tally(self, out: dict, status: int, body: bytes, err: str | None, ms: float) -> None:
        out["latencies_ms"].append(ms)
        out["statuses"][str(status)] = out["statuses"].get(str(status), 0) + 1
        if status == 200:
            try:
                doc = json.loads(body)
                out["took_ms"].append(float(doc.get("took_ms", 0.0)))
                out["cached"] += bool(doc.get("cached"))
                if len(doc.get("items", ())) < self.spec.get("expect_results", K):
                    out["short_results"] += 1
            except ValueError as exc:
                err = f"bad JSON: {exc}"
        elif err is None:
            err = f"HTTP {status}: {body[:300].decode(errors='replace')}"
        if err is not None and len(out["errors"]) < 10:
            out["errors"].append(err)

    async def _worker(self, conn, targets, out: dict | None) -> None:
        for target in targets:  # one iterator shared by all workers: each takes the next free target
            t0 = time.perf_counter()
            try:
                status, body, conn = await self._one(conn, target)
                err = None
            except Exception as exc:  # a connection error is an error, never a crash
                status, body, err = -1, b"", f"{type(exc).__name__}: {exc}"
                self._close(conn)
                conn = None
            if out is not None:
                self._tally(out, status, body, err, (time.perf_counter() - t0) * 1e3)
        self._close(conn)

    async def run(self, targets: list[str], record: bool) -> dict:
        out = {"latencies_ms": [], "took_ms": [], "statuses": {}, "errors": [], "cached": 0, "short_results": 0}
        conns = [None] * self.conc
        if self.client is None:
            conns = [await _raw_connect(self.host, self.port) for _ in range(self.conc)]
        shared = iter(targets)
        c0 = time.process_time()
        t0 = time.perf_counter()
        await asyncio.gather(*(self._worker(c, shared, out if record else None) for c in conns))
        out["wall_s"] = time.perf_counter() - t0
        out["cpu_s"] = time.process_time() - c0
        return out

    async def main(self) -> dict:
        spec = self.spec
        if spec.get("warmup"):
            await self.run(spec["warmup"], record=False)
        before = get_text(self.port, "/metrics") if spec.get("metrics") else ""
        out = await self.run(spec["targets"], record=True)
        if spec.get("metrics"):
            out["metrics_before"], out["metrics_after"] = before, get_text(self.port, "/metrics")
        if self.client is not None:
            await self.client.aclose()
        return out


def loadgen_main() -> int:
    spec = json.loads(sys.stdin.read())
    out = asyncio.run(LoadGen(spec).main())
    sys.stdout.write(json.dumps(out))
    return 0


def _spawn_loadgen(spec: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ENTRY), "--loadgen"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def run_load(
    port: int,
    texts: list[str],
    concurrency: int,
    *,
    warmup: list[str],
    client: str,
    metrics: bool = False,
    mode: str | None = None,
) -> dict:
    """``mode``: the search's ``mode`` parameter (None: not sent, the API's default, hybrid)."""
    extra = f"&mode={mode}" if mode else ""
    target = lambda t: f"/v1/search?q={quote_plus(t)}&limit={K}{extra}"  # noqa: E731
    spec = {
        "port": port,
        "concurrency": concurrency,
        "client": client,
        "targets": [target(t) for t in texts],
        "warmup": [target(t) for t in warmup],
        "expect_results": K,
        "metrics": metrics,
    }
    out = _spawn_loadgen(spec, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"load generator failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)


def run_load_health(port: int, client: str, n: int = 500) -> dict:
    """The load generator's own cost: /healthz is the cheapest answer the app gives."""
    spec = {
        "port": port,
        "concurrency": 1,
        "client": client,
        "targets": ["/healthz"] * n,
        "warmup": ["/healthz"] * 20,
        "expect_results": 0,
    }
    out = _spawn_loadgen(spec, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr[-500:]}
    r = json.loads(out.stdout)
    lat = r["latencies_ms"]
    return {
        "requests": len(lat),
        **{k: v for k, v in summarize(lat).items() if k != "n"},
        "loadgen_cpu_ms_per_request": round(1e3 * r["cpu_s"] / max(1, len(lat)), 3),
        "statuses": r["statuses"],
    }
