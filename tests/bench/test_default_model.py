"""bench/default_model.py stays runnable: a tiny run (2 clips, 5 queries, a 20 s file instead of an
hour) of the new default model against the old one produces every number and a complete results
file. (Speed targets are judged by the full run in bench/results_default_model.json, never here.)"""

import importlib.util
import json

import pytest

from tests.bench import REPO

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
NEW = REPO / "models" / "clapsearch-sfx-v2"
OLD = REPO / "models" / "clapsearch-sfx-v1"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_default_model", REPO / "bench" / "default_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_yamnet_analytic_macs():
    # MobileNetV1 as YAMNet configures it: 69.2 M multiply-adds per 0.96 s patch (incl. the 521-way dense)
    assert _bench().yamnet_macs() == 69_165_056


@pytest.mark.slow
def test_bench_default_model_tiny_run(tmp_path, capsys):
    for folder in (NEW, OLD):
        if not (folder / "manifest.json").is_file():
            pytest.skip(f"model folder {folder.name} absent")
    bench = _bench()
    out = tmp_path / "results_default_model.json"
    tiny = "--clips 2 --repeats 1 --queries 5 --text-warmup 2 --long-seconds 20 --wait-quiet 0 --peak-n 512".split()
    assert bench.main(["--new", str(NEW), "--old", str(OLD), *tiny, "--out", str(out)]) == 0
    assert "new/old" in capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["command"] and r["machine"]["logical_cpus"] and r["peak"]["numpy_fp32_gflops"] > 0
    assert r["models"]["new"]["patched"] is True and r["models"]["old"]["patched"] is False

    audio = r["audio"]
    for key in ("new", "old"):
        for batch in ("b1", "b16"):
            row = audio[key][batch]
            assert row["clips_per_s"] > 0 and len(row["pass_s"]) == 1
            assert 0 < row["fraction_of_peak"] < 10
        assert audio[key]["flops"]["gflop"] > 0 and audio[key]["flops"]["unresolved_nodes"] == 0
        assert audio["ratio_new_over_old"]["b1"] > 0 and audio["ratio_new_over_old"]["b16"] > 0
    flops = audio["new"]["flops"]
    assert flops["patches_per_clip"] == 20
    # the graph's count agrees with the analytic MobileNetV1 count to within the head / padding details
    assert flops["tower_mflop_per_patch"] == pytest.approx(flops["analytic_yamnet_mflop_per_patch"], rel=0.05)

    text = r["text"]
    for key in ("new", "old"):
        assert text[key]["queries"] == 5 and 0 < text[key]["p50_ms"] <= text[key]["p95_ms"]
    assert isinstance(text["new_meets_target"], bool) and text["ratio_p50_new_over_old"] > 0

    long = r["long_file"]
    assert long["seconds"] == 20 and long["file_bytes"] > 0
    for key in ("new", "old"):
        item = long[key]
        assert item["error"] is None and item["norm"] == pytest.approx(1.0, abs=1e-3)
        assert item["duration_s"] == pytest.approx(20.0, abs=0.1)
        assert item["peak_rss_bytes"] >= item["rss_after_open_bytes"] > 0 and item["wall_s"] > 0
    assert long["new"]["patches"] == 41  # 20 s at 0.48 s hops, zero-filled to whole hops
