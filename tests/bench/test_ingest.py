"""The ingest benchmark stays runnable: a smoke run with the shipped default model on tiny libraries
checks that every part produces throughputs, the ingest/peer ratio, re-run timings with the right
embedded/unchanged counts and memory peaks, and that the results file is complete. (Targets are
judged by the full run recorded in bench/RESULTS.md, never here.)"""

import pytest

from tests.bench import REPO, run_bench

pytest.importorskip("psutil")
if not (REPO / "models" / "clapsearch-sfx-v1" / "manifest.json").is_file():
    pytest.skip("the shipped default model is not in this checkout", allow_module_level=True)


@pytest.mark.slow
def test_bench_ingest_quick_run(tmp_path):
    out = tmp_path / "results_ingest.json"
    results = run_bench(
        "ingest.py", "--quick", "--out", str(out), "--work", str(tmp_path / "work"), out=out, timeout=300
    )
    assert results["command"] and results["machine"]["logical_cpus"] >= 1
    assert results["config"]["quick"] is True
    files = results["config"]["files"]

    tp = results["throughput"]
    assert tp["library"]["files"] == files and tp["library"]["audio_s"] > 0
    assert {"peer embed_files", "ingest (defaults)"} <= set(tp["systems"])
    for name, row in tp["systems"].items():
        assert row["files"] == files and row["failed"] == 0, name
        assert row["files_per_s_best"] > 0 and row["audio_s_per_s_best"] > 0
        assert len(row["runs"]) == results["config"]["rounds"]
    # both systems decoded the same audio
    peer, ingest = tp["systems"]["peer embed_files"], tp["systems"]["ingest (defaults)"]
    assert ingest["audio_s"] == pytest.approx(peer["audio_s"], rel=1e-3)
    assert tp["ratio_ingest_vs_peer"] > 0 and tp["overhead"] == pytest.approx(1 - tp["ratio_ingest_vs_peer"], abs=1e-3)
    assert len(tp["ratio_per_round"]) == results["config"]["rounds"]
    profile = ingest["profile_best"]
    assert profile["onnx_calls"] >= 1 and profile["onnx_s"] > 0 and profile["decode_workers_cpu_s"] > 0
    cli = tp["cli_ingest"]
    assert cli["embedded"] == files and cli["failed"] == 0 and cli["index"]["files"]["vectors"] == files
    assert 0 < cli["memory"]["peak_single_rss_gb"] <= cli["memory"]["peak_tree_rss_gb"]
    assert cli["memory"]["max_processes"] >= 2  # the CLI and at least one decode worker were seen

    rr = results["rerun"]
    n, k = rr["files"], results["config"]["touch"]
    assert rr["first_ingest"]["embedded"] == n and rr["first_ingest"]["memory"]["peak_tree_rss_gb"] > 0
    assert all(r["embedded"] == 0 and r["unchanged"] == n and r["wall_s"] > 0 for r in rr["no_change"])
    assert rr["after_touch"]["embedded"] == 0 and rr["after_touch"]["unchanged"] == n  # the hash confirmed them
    assert rr["after_touch_again"]["embedded"] == 0
    assert rr["after_modify"]["embedded"] == k and rr["after_modify"]["unchanged"] == n - k

    lf = results["long_file"]["ingest"]
    assert lf["embedded"] == 4 and lf["failed"] == 0 and lf["index"]["segments"]["vectors"] > 4
    assert lf["memory"]["peak_tree_rss_gb"] > 0

    assert [c["target"] for c in results["targets"]] and all(isinstance(c["pass"], bool) for c in results["targets"])
