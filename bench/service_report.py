"""What the search service benchmark records and prints (``bench/service.py`` describes the
run): latency summaries, the CPU other processes took, the server's memory, its own metrics per
phase, the derived overhead and memory figures, and the report."""

from __future__ import annotations

import resource
import threading
import time

from machine import CpuMonitor, git, loadavg
from service_fixture import index_file_bytes, model_file_bytes

OVERHEAD_TARGET = 0.20
QUIET_PCT = 10.0  # a round is "quiet" when other processes took < 10 % of the CPUs meanwhile


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def summarize(latencies_ms: list[float]) -> dict:
    return {
        "n": len(latencies_ms),
        "p50_ms": round(pct(latencies_ms, 50), 3),
        "p90_ms": round(pct(latencies_ms, 90), 3),
        "p99_ms": round(pct(latencies_ms, 99), 3),
        "max_ms": round(max(latencies_ms), 3) if latencies_ms else None,
        "mean_ms": round(sum(latencies_ms) / len(latencies_ms), 3) if latencies_ms else None,
    }


def machine_info() -> dict:
    """bench/index.py's machine record plus the serving stack's versions."""
    from index import machine_info as index_machine_info  # imports faiss: not in the load generator

    info = index_machine_info()
    info["loadavg_start"] = loadavg()
    versions = {}
    for name in "numpy faiss onnxruntime fastapi starlette uvicorn httpx redis sqlalchemy pydantic".split():
        try:
            versions[name] = __import__(name).__version__
        except Exception:
            pass
    info["versions"] = versions
    return info


def code_state() -> dict:
    """Which service/indexer code was measured: the commit and whether those folders differ from it."""
    dirty = git("status", "--porcelain", "--", "service", "indexer")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "subject": git("log", "-1", "--format=%s")[:120],
        "service_or_indexer_uncommitted": [line[3:] for line in dirty.splitlines()],
    }


# ----------------------------------------------------------------------------- processes: CPU and memory
def _tree_sum(pid: int | None, of) -> float:
    """The sum of ``of(process)`` over the process ``pid`` and its descendants (those that exit
    meanwhile are skipped)."""
    import psutil

    if pid is None:
        return 0
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += of(p)
        except psutil.Error:
            pass
    return total


def tree_rss(pid: int) -> int:
    return _tree_sum(pid, lambda p: p.memory_info().rss)


def tree_cpu(pid: int | None) -> float:
    return _tree_sum(pid, lambda p: sum(p.cpu_times()[:2]))  # user + system


class CpuWindow(CpuMonitor):
    """CPU seconds used by everything except this script, its children and the server tree."""

    def __init__(self, server_pid: int | None):
        super().__init__()
        self.server_pid = server_pid

    def own_cpu(self) -> tuple[float, float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished load generators
        return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime + tree_cpu(self.server_pid)

    def record(self) -> dict:
        return {
            "other_cpu_s": round(self.other, 2),
            "other_cpu_pct": round(self.other_pct, 1),
            "own_cpu_s": round(self.own, 2),
            "wall_s": round(self.wall, 2),
        }


class RssSampler:
    def __init__(self, pid: int, every: float = 0.5):
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
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


# ----------------------------------------------------------------------------- the server's own metrics
def get_text(port: int, path: str) -> str:
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
    d = lambda key: a.get(key, 0.0) - b.get(key, 0.0)  # noqa: E731
    out = {}
    for key in a:
        if key.startswith("clapsearch_stage_seconds_sum{"):
            stage = key.split('stage="')[1].split('"')[0]
            count = d(key.replace("_sum{", "_count{"))
            if count:
                out[stage] = {
                    "ms_per_request": round(1e3 * d(key) / max(1, requests), 3),
                    "calls": int(count),
                    "ms_per_call": round(1e3 * d(key) / count, 3),
                }
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


def metrics_excerpt(text: str) -> dict:
    """Per-stage sums and counts (``*_sum`` / ``*_count`` samples) and the cache counters."""
    return {
        key: value
        for key, value in _samples(text).items()
        if key.split("{")[0].endswith(("_sum", "_count")) or "cache" in key.split("{")[0]
    }


# ----------------------------------------------------------------------------- records and derived figures
def phase_row(
    kind: str, c: int, r: dict, window: dict, waited: float, load: str, rss_end: int, extra: dict | None = None
) -> dict:
    """One phase's record from the load generator's answer ``r`` and the CPU ``window`` around it."""
    lat = r["latencies_ms"]
    errors = sum(v for k, v in r["statuses"].items() if k != "200") + r["short_results"]
    return {
        "phase": kind,
        "concurrency": c,
        "requests": len(lat),
        "errors": errors,
        "statuses": r["statuses"],
        "error_samples": r["errors"],
        "short_results": r["short_results"],
        **{k: v for k, v in summarize(lat).items() if k != "n"},
        "qps": round(len(lat) / r["wall_s"], 1),
        "wall_s": round(r["wall_s"], 2),
        "cached_answers": r["cached"],
        "server_took_ms_p50": round(pct(r["took_ms"], 50), 3),
        "server_took_ms_p99": round(pct(r["took_ms"], 99), 3),
        "loadgen_cpu_ms_per_request": round(1e3 * r["cpu_s"] / max(1, len(lat)), 3),
        "server_stages": stage_deltas(r.get("metrics_before", ""), r.get("metrics_after", ""), len(lat)),
        "rss_end": rss_end,
        "waited_s": round(waited, 1),
        "loadavg_before": load,
        **window,
        **(extra or {}),
    }


def print_phase(row: dict) -> None:
    print(
        f"{row['phase']:>4} c={row['concurrency']:<3} {row['requests']:>5} req  errors {row['errors']}  "
        f"p50 {row['p50_ms']:7.2f}  p90 {row['p90_ms']:7.2f}  p99 {row['p99_ms']:7.2f} ms  {row['qps']:7.1f} q/s  "
        f"cached {row['cached_answers']}  (other processes {row['other_cpu_pct']:.1f} % CPU)",
        flush=True,
    )
    if row["error_samples"]:
        print(f"     errors: {row['error_samples'][:3]}", flush=True)


def overhead_figures(phases: list[dict], peer_rounds: list[dict], peer_sum: dict) -> dict:
    """The service's overhead over the raw peer at c=1 on cache misses (empty without that phase)."""
    import numpy as np

    c1 = next((p for p in phases if p["phase"] == "miss" and p["concurrency"] == 1), None)
    if c1 is None or not peer_rounds:
        return {}
    per_round = [r["overhead_p50"] for r in peer_rounds]
    quiet = [
        r["overhead_p50"]
        for r in peer_rounds
        if r["peer_other_cpu_pct"] < QUIET_PCT and r["service_other_cpu_pct"] < QUIET_PCT
    ]
    return {
        "p50": round(float(np.median(per_round)), 4),
        "p50_quiet_rounds": round(float(np.median(quiet)), 4) if quiet else None,
        "quiet_rounds": len(quiet),
        "p50_pooled": round(c1["p50_ms"] / peer_sum["p50_ms"] - 1, 4),
        "p99": round(c1["p99_ms"] / peer_sum["p99_ms"] - 1, 4),
        "p50_ms": round(c1["p50_ms"] - peer_sum["p50_ms"], 3),
        "p50_per_round": per_round,
        # CPU per query (the server's process tree vs the peer's process): what the service adds
        # in work, which other tenants' load does not move the way it moves wall times
        "cpu": round(float(np.median([r["overhead_cpu"] for r in peer_rounds])), 4),
        "cpu_ms_per_query": {
            "peer": round(float(np.median([r["peer_cpu_ms"] for r in peer_rounds])), 3),
            "service": round(float(np.median([r["service_cpu_ms"] for r in peer_rounds])), 3),
        },
        "definition": "median over interleaved rounds of service p50 / peer p50 - 1 (same texts, "
        "c=1, cache misses); p50_pooled and p99 from all rounds' latencies",
        "inside_app_p50_ms": c1["server_took_ms_p50"],
    }


def memory_figures(
    home, sampler: RssSampler, *, baseline_rss: int, rss_ready: int, rss_start: int, t_start: float, rss_end: int
) -> dict:
    """The server tree's RSS over the run and what it is made of."""
    during = sampler.since(t_start)
    peak = max([rss for _, rss in sampler.samples] or [0])
    model = model_file_bytes()
    idx_bytes = index_file_bytes(home)
    memory = {
        "rss_import_baseline": baseline_rss,
        "rss_ready": rss_ready,
        "rss_start": rss_start,
        "rss_peak": peak,
        "rss_peak_during_load": max(during or [0]),
        "rss_end": rss_end,
        "growth_bytes": rss_end - rss_start,
        "growth_pct": round(100.0 * (rss_end - rss_start) / max(1, rss_start), 2),
        "model_file_bytes": model["total_bytes"],
        "model": model,
        "index_file_bytes": idx_bytes,
        "overhead_bytes": rss_end - model["total_bytes"] - idx_bytes,
        "samples": len(sampler.samples),
        "sample_every_s": sampler.every,
        "timeline": [(round(t, 1), rss) for t, rss in sampler.samples[:: max(1, len(sampler.samples) // 120)]],
    }
    memory["stable"] = bool(abs(memory["growth_bytes"]) < max(64 * 2**20, 0.05 * rss_start))
    return memory


# ----------------------------------------------------------------------------- the report
def print_report(res: dict) -> None:
    p, o, m = res["peer"], res["overhead"], res["memory"]
    print()
    print(
        f"fixture: {res['fixture']['n']:,} vectors, {res['fixture']['index']['describe']}; server "
        f"redis={res['server']['redis'] or 'off'}"
    )
    print(f"raw encode+search (peer): p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms over {p['n']} queries")
    print(
        f"{'phase':<6}{'conc':>5}{'req':>7}{'err':>5}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'q/s':>9}"
        f"{'cached':>8}{'other CPU':>11}"
    )
    for r in res["phases"]:
        print(
            f"{r['phase']:<6}{r['concurrency']:>5}{r['requests']:>7}{r['errors']:>5}{r['p50_ms']:>9.2f}"
            f"{r['p90_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['qps']:>9.1f}{r['cached_answers']:>8}"
            f"{r['other_cpu_pct']:>10.1f}%"
        )
    if o:
        print(
            f"service overhead at c=1 on misses: p50 {100 * o['p50']:+.1f} % ({o['p50_ms']:+.2f} ms), "
            f"p99 {100 * o['p99']:+.1f} %  (target < {100 * OVERHEAD_TARGET:.0f} %: "
            f"{'MET' if o['p50'] < OVERHEAD_TARGET else 'NOT MET'})"
        )
        if o.get("p50_quiet_rounds") is not None:
            print(
                f"  median over the {o['quiet_rounds']} quiet rounds (other processes < {QUIET_PCT:.0f} % CPU): "
                f"{100 * o['p50_quiet_rounds']:+.1f} %"
            )
        cpu = o["cpu_ms_per_query"]
        print(
            f"  CPU per query: service {cpu['service']:.2f} ms vs peer {cpu['peer']:.2f} ms "
            f"(median over the rounds of their ratio: {100 * o['cpu']:+.1f} %)"
        )
    mib = lambda b: f"{b / 2**20:,.0f} MiB"  # noqa: E731
    print(
        f"server RSS: ready {mib(m['rss_ready'])}, start {mib(m['rss_start'])}, peak {mib(m['rss_peak'])}, "
        f"end {mib(m['rss_end'])} (growth {m['growth_pct']:+.1f} %: {'stable' if m['stable'] else 'NOT stable'}); "
        f"model files {mib(m['model_file_bytes'])} + index file {mib(m['index_file_bytes'])}, bare import "
        f"{mib(m['rss_import_baseline'])}"
    )
    for kind, h in res["client"]["healthz"].items():
        if "p50_ms" in h:
            print(
                f"load generator client {kind}{' (used)' if kind == res['client']['kind'] else ''}: /healthz "
                f"p50 {h['p50_ms']:.2f} ms, {h['loadgen_cpu_ms_per_request']:.3f} CPU-ms per request"
            )
    print(f"errors: {res['errors']}; target met: {res['target']['met']}")
