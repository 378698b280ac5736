"""The index benchmark stays runnable: a smoke run on 20k 64-d vectors builds an IVF index through
plan_index + VectorIndex.build, times it against exact search and writes a complete results file.
(The target is judged by the full 1 M run recorded in bench/RESULTS.md, never here.)"""

import pytest

from tests.bench import run_bench

pytest.importorskip("faiss")


@pytest.mark.slow
def test_bench_index_quick_run(tmp_path):
    out = tmp_path / "results_index.json"
    args = "--n 20000 --dim 64 --queries 50 --exact-below 0 --rounds 2 --wait-quiet 0".split()
    results = run_bench(
        "index.py",
        *args,
        "--out",
        str(out),
        out=out,
        timeout=300,
    )
    assert results["command"] and results["machine"]["cpu"] and results["machine"]["faiss"]
    assert results["data"]["n"] == 20000 and results["data"]["dim"] == 64 and results["data"]["generator"]
    assert results["plan"]["kind"].startswith("ivf") and results["index"]["ntotal"] == 20000
    assert results["index"]["params"]["nprobe"] >= 1 and results["index"]["tuning"]["ladder"]

    search = results["search"]
    assert 0.0 <= search["recall_at_10"] <= 1.0
    assert search["exact_qps"] > 0 and search["index_qps"] > 0 and search["speedup"] > 0
    assert len(search["rounds"]) == 2 and search["nprobe_sweep"]
    assert all(0.0 <= row["recall_at_10"] <= 1.0 for row in search["nprobe_sweep"])

    memory = results["memory"]
    assert memory["index_file_bytes"] > 20000 * 64 * 4 and memory["memory_bytes_estimate"] > 0
    assert memory["loaded_rss_bytes"] > 0
    assert {"rss_growth_bytes", "peak_rss_bytes", "budget_bytes"} <= set(memory)
    assert results["build"]["total_s"] > 0 and results["build"]["train_s"] is not None
    assert isinstance(results["target"]["met"], bool)
