"""The benchmark stays runnable: a smoke run on a micro model checks that every system it compares
produces vectors, that ours agrees with eager transformers, and that the results file is complete.
(Speed targets are judged by the full run recorded in bench/RESULTS.md, never here.)"""

import pytest

from tests.bench import run_bench

pytest.importorskip("torch")


@pytest.mark.slow
def test_bench_embed_quick_run(tmp_path):
    out = tmp_path / "results.json"
    results = run_bench("embed.py", "--quick", "--out", str(out), "--variants", "fp32,int8", out=out, timeout=600)
    audio = results["audio"]
    assert {"eager transformers fp32", "ONNX int8 baseline", "ours fp32", "ours int8"} <= set(audio)
    for system in audio.values():
        assert system["b1"]["clips_per_s"] > 0 and system["b16"]["clips_per_s"] > 0
    assert audio["ours fp32"]["min_cosine_to_eager"] > 0.9999
    assert audio["ours int8"]["min_cosine_to_eager"] > 0.95  # 0.989 on AVX2-only CPUs (no VNNI)
    assert {"ours fp32", "ours int8"} <= set(results["text"])
