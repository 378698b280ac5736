"""The near-duplicate benchmark stays runnable: a smoke run on a few recordings and their variants
(ingested with the shipped default model) and a small scale run, writing a complete results file.
(The figures are judged by the full run recorded in bench/RESULTS.md, never here.)"""

import pytest

from tests.bench import run_bench

pytest.importorskip("faiss")


@pytest.mark.slow
def test_bench_duplicates_quick_run(tmp_path):
    out = tmp_path / "results_duplicates.json"
    results = run_bench(
        "duplicates.py",
        *"--originals 3 --distinct 3 --scale 3000".split(),
        "--out",
        str(out),
        out=out,
        timeout=600,
    )
    assert results["failed"] == 0 and results["files"] == results["variant_files"] + 6
    assert [row["threshold"] for row in results["thresholds"]] == [0.9, 0.93, 0.95, 0.96, 0.97, 0.98, 0.99]
    assert all(0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1 for row in results["thresholds"])
    assert results["timing"]["finder_full_s"] > 0 and results["scale"]["planted_pairs_found"] >= 0.9
