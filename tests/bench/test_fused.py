"""The fused long-file benchmark stays runnable: a smoke run on a micro fused model checks that ours
and transformers produce vectors that agree, that ours is batch-invariant, and that the results
file carries the stage breakdown. (Speed targets are judged by the full run in bench/RESULTS.md.)"""

import pytest

from tests.bench import run_bench

pytest.importorskip("torch")


@pytest.mark.slow
def test_bench_fused_quick_run(tmp_path):
    out = tmp_path / "results.json"
    results = run_bench("fused.py", "--quick", "--out", str(out), out=out, timeout=600)
    audio = results["audio"]
    assert {"ours fp32", "transformers fp32"} <= set(audio)
    for system in audio.values():
        assert system["clips_per_s"] > 0
        assert set(system["stages_ms"]) == {"decode", "front_end", "network"}
    assert audio["ours fp32"]["max_abs_diff_to_transformers"] < 1e-4
    assert results["ours_batch_1_vs_all_max_abs_diff"] == 0.0
    assert "laion_clap" in results["laion_skipped"]  # quick runs never build laion_clap's HTSAT-tiny
