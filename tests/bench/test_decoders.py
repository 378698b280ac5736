"""The decoder benchmark stays runnable: a smoke run on a few short clips writes a complete
results file (the figures are judged by the full run recorded in bench/RESULTS.md, never here)."""

import pytest

from tests.bench import run_bench

pytest.importorskip("av")


@pytest.mark.slow
def test_bench_decoders_quick_run(tmp_path):
    out = tmp_path / "results_decoders.json"
    args = ("--clips", "2", "--seconds", "1", "--long-seconds", "5", "--rounds", "1", "--out", str(out))
    results = run_bench("decoders.py", *args, out=out, timeout=300)
    rows = results["soundfile_formats"]
    assert {(r["format"], r["target_sr"]) for r in rows} == {
        (f, sr) for f in ("WAV", "FLAC", "OGG") for sr in (44_100, 48_000)
    }
    assert all(r["ratio_cpu"] > 0 and r["ratio_wall"] > 0 for r in rows + results["streaming"])
    assert results["ratio_cpu_geomean"] > 0
    assert [r["format"] for r in results["pyav"]] == ["m4a-aac", "m4a-alac"]
    assert all(r["x_realtime_cpu"] > 0 for r in results["pyav"])
