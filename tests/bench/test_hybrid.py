"""The words-plus-sound benchmark stays runnable: the demo library under its original names with
the shipped default model, and a small speed run, writing a complete results file. (The figures
are judged by the full run recorded in bench/RESULTS.md, never here.)"""

import pytest

from tests.bench import run_bench

pytest.importorskip("faiss")


@pytest.mark.slow
def test_bench_hybrid_quick_run(tmp_path):
    out = tmp_path / "results_hybrid.json"
    results = run_bench("hybrid.py", "--scale", "2000", "--queries", "5", "--out", str(out), out=out, timeout=600)
    assert results["files"] == 143
    reported = results["reported"]["held-out, all queries"]
    assert reported["queries"] > 50 and all(0 <= reported[m] <= 1 for m in ("audio", "text", "hybrid"))
    assert results["tuning"]["chosen"] in [int(c) for c in results["tuning"]["hybrid_r10_mrr_by_constant"]]
    assert results["scale"]["files"] == 2000 and results["scale"]["p50_ms"]["hybrid"] > 0
