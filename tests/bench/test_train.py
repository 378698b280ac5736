"""The training benchmark stays runnable: a smoke run on micro models checks that every part
produces throughputs, the ours/peer ratio and data-wait shares, and that the results file is
complete. (Speed is judged by the full run recorded in bench/RESULTS.md, never here.)"""

import pytest

from tests.bench import run_bench

pytest.importorskip("torch")


@pytest.mark.slow
def test_bench_train_quick_run(tmp_path):
    out = tmp_path / "results-train.json"
    results = run_bench("train.py", "--quick", "--json", str(out), "--device", "cpu", out=out, timeout=120)
    assert results["command"] and results["machine"]["cpu"] and results["machine"]["torch_threads"] >= 1

    model = results["model_only"]
    systems = {row["system"]: row for row in model["rows"]}
    assert {"ours micro", "transformers ClapModel micro", "ours micro-cnn-bert"} <= set(systems)
    assert all(row["clips_per_s"] > 0 and row["step_ms_median"] > 0 for row in systems.values())
    assert model["ratio_ours_vs_peer"]["fp32"] > 0
    detail = model["ratio_detail"]["fp32"]
    assert len(detail["per_round"]) == 2 and all(r > 0 for r in detail["per_round"])
    assert detail["ratio_of_medians"] == pytest.approx(
        systems["ours micro"]["clips_per_s"] / systems["transformers ClapModel micro"]["clips_per_s"], rel=1e-3
    )

    runs = results["end_to_end"]["runs"]
    assert sorted(run["workers"] for run in runs) == [0, 1, 2]
    for run in runs:
        assert run["clips_per_s"] > 0
        assert 0.0 <= run["data_wait_share"] <= 1.0
        assert run["warmup_window_skipped"] and run["steps_timed"] >= 1
