"""The soak benchmark stays runnable: a smoke run (500 vectors, a few seconds of mixed search,
classify, upload and similar traffic at concurrency 8 and 16 against a real uvicorn server)
answers every request and writes a complete results file. The figures that judge the target
(c=64, minutes, RSS within 5 %) come from the full run recorded in bench/RESULTS.md."""

import json
import subprocess
import sys

import pytest

from tests.bench import REPO

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")


@pytest.mark.slow
def test_bench_soak_smoke_run(tmp_path):
    out = tmp_path / "results_soak.json"
    cmd = [sys.executable, "bench/soak.py", "--smoke", "--home", str(tmp_path / "home"), "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["command"] and results["machine"]["logical_cpus"]
    for phase in (results["peer_c8"], results["soak"]):
        assert phase["requests"] > 0 and phase["errors"] == 0, phase["error_kinds"]
        assert phase["rps"] > 0 and 0 < phase["p50_ms"] <= phase["p99_ms"]
        assert sum(kind["n"] for kind in phase["by_kind"].values()) == phase["requests"]
    assert results["soak"]["concurrency"] == 16 and results["memory"]["samples"] >= 2
