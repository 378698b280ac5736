"""One settings path: IndexerSettings alone resolves the model folder and the ONNX options, every
command takes them the same way, and the worker's and the server's settings are typed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from indexer import cli
from indexer.models.defaults import shipped_model_dir
from indexer.models.options import OnnxOptions
from indexer.settings import IndexerSettings

V1 = Path(__file__).resolve().parents[2] / "models" / "clapsearch-sfx-v1"


def test_tests_see_no_developer_settings():
    leaked = [
        n
        for n in os.environ
        if n.startswith("CLAPSEARCH_")
        and not n.startswith("CLAPSEARCH_TEST_")
        and n not in ("CLAPSEARCH_REQUIRE_SERVICES", "CLAPSEARCH_GOLDEN_DIR")
    ]
    assert leaked == []


def test_model_folder_comes_from_the_argument_then_the_environment_then_the_shipped_default(monkeypatch):
    assert IndexerSettings().resolved_model_dir == shipped_model_dir()
    monkeypatch.setenv("CLAPSEARCH_MODEL", str(V1))
    assert IndexerSettings().resolved_model_dir == V1
    assert IndexerSettings(model=Path("/elsewhere")).resolved_model_dir == Path("/elsewhere")


def test_onnx_options_follow_the_settings(monkeypatch):
    assert IndexerSettings().onnx == OnnxOptions("auto", None, True)
    monkeypatch.setenv("CLAPSEARCH_ONNX_THREADS", "3")
    monkeypatch.setenv("CLAPSEARCH_ONNX_SPINNING", "false")
    monkeypatch.setenv("CLAPSEARCH_DEVICE", "cpu")
    assert IndexerSettings().onnx == OnnxOptions("cpu", 3, False)


def test_model_commands_read_the_same_settings_as_the_library_commands(monkeypatch, capsys):
    monkeypatch.setenv("CLAPSEARCH_MODEL", str(V1))
    assert cli.main(["embed-text", "rain"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    monkeypatch.setenv("CLAPSEARCH_MODEL_VARIANT", "int4")  # `indexer embed` used to ignore it
    assert cli.main(["embed-text", "rain"]) == 2
    err = capsys.readouterr().err
    assert "error [model.invalid]" in err and "'int4'" in err
    assert cli.main(["embed-text", "rain", "--variant", "fp32-fp16"]) == 0  # the option wins


def test_worker_settings_are_typed_and_write_no_environment(monkeypatch):
    from service.settings import ServiceSettings, WorkerSettings

    before = dict(os.environ)
    worker, api = WorkerSettings(), ServiceSettings()
    assert (worker.onnx_threads, worker.onnx_spinning) == (0, True)
    assert (api.onnx_threads, api.onnx_spinning) == (1, False)
    monkeypatch.setenv("CLAPSEARCH_ONNX_THREADS", "2")
    assert WorkerSettings().onnx.threads == 2
    monkeypatch.delenv("CLAPSEARCH_ONNX_THREADS")
    assert dict(os.environ) == before


def test_serve_takes_host_port_and_workers_from_the_settings(monkeypatch):
    import uvicorn

    from service.cli import main as api_cli

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    monkeypatch.setenv("CLAPSEARCH_PORT", "8123")
    monkeypatch.setenv("CLAPSEARCH_WORKERS", "2")
    api_cli.main(["serve"], standalone_mode=False)
    api_cli.main(["serve", "--port", "9000", "--host", "0.0.0.0"], standalone_mode=False)
    assert [(c["host"], c["port"], c["workers"]) for c in calls] == [("127.0.0.1", 8123, 2), ("0.0.0.0", 9000, 2)]
    monkeypatch.setenv("CLAPSEARCH_PORT", "70000")
    with pytest.raises(Exception, match="port"):
        api_cli.main(["serve"], standalone_mode=False)
