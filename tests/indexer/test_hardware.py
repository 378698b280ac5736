"""Honest hardware reporting: what the model's graphs and the index really run on, and a CUDA
request that ended on the CPU made visible."""

from __future__ import annotations

import json

from indexer import cli
from indexer.models.hardware import faiss_report, format_report, hardware_report, onnx_report
from tests.indexer import library


class _Encoder:
    def __init__(self, active: dict[str, list[str]]):
        self.active = active

    def session_providers(self) -> dict[str, list[str]]:
        return self.active


CPU, CUDA = ["CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_a_cuda_request_that_runs_on_the_cpu_is_reported_as_such():
    fell = onnx_report(_Encoder({"audio": CPU, "text": CPU}), "cuda")
    assert fell["device"] == "cpu" and fell["fell_back_to_cpu"] is True
    assert "WARNING: CUDA was wanted" in format_report(fell, faiss_report("auto"))
    mixed = onnx_report(_Encoder({"audio": CUDA, "text": CPU}), "cuda")
    assert mixed["device"] == "mixed" and mixed["fell_back_to_cpu"] is True
    fine = onnx_report(_Encoder({"audio": CUDA, "text": CUDA}), "cuda")
    assert fine["device"] == "cuda" and fine["fell_back_to_cpu"] is False
    assert onnx_report(_Encoder({"audio": CPU}), "cpu")["fell_back_to_cpu"] is False
    # the one-line summary the page shows says it too
    summary = hardware_report(_Encoder({"audio": CPU, "text": CPU}), "cuda", "auto")["summary"]
    assert summary.startswith("model on CPU (audio: CPU, text: CPU) · FAISS ")
    assert summary.endswith("CUDA requested but (part of) the model runs on the CPU")
    assert "CUDA requested" not in hardware_report(_Encoder({"audio": CPU}), "cpu", "auto")["summary"]


def test_status_hardware_reads_the_loaded_sessions(tmp_path, capsys):
    library.write(tmp_path / "lib" / "a.wav", 1.0, sr=16_000)
    home = str(tmp_path / "home")
    assert cli.main(["ingest", str(tmp_path / "lib"), "--home", home, "-q"]) == 0
    capsys.readouterr()
    assert cli.main(["status", "--hardware", "--json", "--home", home]) == 0
    report = json.loads(capsys.readouterr().out)
    model, index = report["hardware"]["model"], report["hardware"]["index"]
    assert set(model["active"]) >= {"audio", "text"} and all(model["active"].values())
    assert model["device"] in ("cpu", "cuda", "mixed") and isinstance(model["fell_back_to_cpu"], bool)
    assert index["build"] in ("cpu", "gpu") and report["collections"][0]["files"]["indexed"] == 1
    # asking for CUDA where ONNX Runtime has none is an error, never a silent CPU run
    if "CUDAExecutionProvider" not in model["available"]:
        assert cli.main(["status", "--hardware", "--device", "cuda", "--home", home]) == 2
        assert "error [model.invalid]" in capsys.readouterr().err
