"""The service benchmark stays runnable: a smoke run on a 20k-vector fixture starts the real
server (uvicorn subprocess), drives /v1/search through the load generator at concurrency 1 and 4
(cache misses and hits), times the in-process peer and writes a complete results file with zero
errors. (The targets are judged by the full 1 M run recorded in bench/RESULTS.md, never here.)"""

import json
import sys

import pytest

from tests.bench import REPO
from tests.helpers import redis_error, run_captured

pytest.importorskip("faiss")
pytest.importorskip("uvicorn")
pytest.importorskip("psutil")
REDIS_URL = "redis://127.0.0.1:6379/13"  # not the full benchmark's db 14: this run flushes its db


@pytest.mark.slow
def test_bench_service_quick_run(tmp_path):
    out = tmp_path / "results_service.json"
    redis = redis_error(REDIS_URL, timeout_s=2) is None
    cmd = [sys.executable, *"bench/service.py --quick --n 20000 --requests 40 --concurrency 1,4".split()]
    cmd += ["--home", str(tmp_path / "home"), "--out", str(out)]
    cmd += ["--redis-url", REDIS_URL] if redis else ["--no-redis"]
    done = run_captured(cmd, cwd=REPO, timeout=110)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())

    assert results["command"] and results["machine"]["cpu"] and results["machine"]["logical_cpus"]
    assert "loadavg_start" in results["machine"] and "loadavg_end" in results["machine"]
    fixture = results["fixture"]
    assert fixture["n"] == 20000 and fixture["index"]["ntotal"] == 20000 and fixture["build_s"] > 0
    assert results["server"]["ready_s"] > 0 and results["server"]["redis"] == (REDIS_URL if redis else None)

    peer = results["peer"]
    assert peer["n"] == 40 and peer["p50_ms"] > 0 and peer["p99_ms"] >= peer["p50_ms"]
    assert len(peer["rounds"]) == 2 and all("overhead_p50" in r and "peer_other_cpu_pct" in r for r in peer["rounds"])

    phases = {(p["phase"], p["concurrency"]): p for p in results["phases"]}
    assert set(phases) == {("miss", 1), ("miss", 4), ("hit", 1), ("hit", 4)}
    for p in phases.values():
        assert p["requests"] == 40 and p["errors"] == 0 and p["statuses"] == {"200": 40}
        assert 0 < p["p50_ms"] <= p["p90_ms"] <= p["p99_ms"] and p["qps"] > 0
        assert "other_cpu_pct" in p and p["loadgen_cpu_ms_per_request"] > 0
    assert phases[("miss", 1)]["cached_answers"] == 0 and phases[("miss", 4)]["cached_answers"] == 0
    if redis:
        assert phases[("hit", 1)]["cached_answers"] == 40 and phases[("hit", 4)]["cached_answers"] == 40

    overhead = results["overhead"]
    assert {"p50", "p50_pooled", "p50_quiet_rounds", "quiet_rounds", "p99", "p50_ms", "p50_per_round"} <= set(overhead)
    memory = results["memory"]
    assert memory["rss_ready"] > 0 and memory["rss_peak"] >= memory["rss_start"] > 0 and memory["rss_end"] > 0
    assert memory["model_file_bytes"] > 0 and memory["index_file_bytes"] > 20000 * 512 * 4
    assert isinstance(memory["stable"], bool) and memory["samples"] > 0
    assert results["errors"] == 0
    assert isinstance(results["target"]["met"], bool) and results["target"]["overhead_p50_max"] == 0.2
    assert results["client"]["healthz"]["raw"]["requests"] > 0
