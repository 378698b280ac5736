"""Readiness tells the truth and never stalls the API (issue 16, defects 4, 5 and 10): a
dependency that refuses (PostgreSQL down) makes the replica not ready, with the reason; one that
hangs (a frozen Redis) is reported within the probe's budget, never on the event loop's time.
All dependencies here are faults on 127.0.0.1 (tests/service/faults.py)."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.helpers import wait_until
from tests.service.conftest import ingest
from tests.service.faults import FrozenServer, TcpProxy


def _timed_get(client, path, **kwargs):
    started = time.perf_counter()
    response = client.get(path, **kwargs)
    return response, time.perf_counter() - started


def test_a_frozen_redis_never_stalls_readiness(open_client):
    with FrozenServer() as frozen:
        client = open_client(redis_url=frozen.redis_url, readiness_timeout_s=0.3)
        slowest = 0.0
        for _ in range(6):
            response, took = _timed_get(client, "/readyz")
            slowest = max(slowest, took)
        # before: ~2.3 s per probe (a PING and RQ's queue count on the event loop, each to its timeout)
        assert slowest < 1.0, slowest
        ready = wait_until(lambda: (r := client.get("/readyz").json())["redis"]["state"] == "down" and r, 5.0)
        assert ready, client.get("/readyz").json()
        assert ready["jobs"]["state"] == "down"
        # Redis is an optimisation: a frozen one is reported, the replica stays ready
        assert ready["ready"] is True and client.get("/readyz").status_code == 200
        # and requests keep answering meanwhile
        assert client.get("/healthz").status_code == 200


def _problem(response, code):
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.needs_postgres
def test_postgresql_hanging_or_refusing_is_not_ready_and_a_503(open_client, pg_db, library, tmp_path):
    home = tmp_path / "pg-home"
    url = pg_db.render_as_string(hide_password=False)
    tracks = [library.path("tone_220.wav"), library.path("roof.wav")]
    assert ingest(home, tracks, segments=False, database_url=url).embedded == 2
    with TcpProxy(pg_db.host or "127.0.0.1", pg_db.port or 5432) as proxy:
        via_proxy = pg_db.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        client = open_client(home=home, database_url=via_proxy, readiness_interval_s=0.2)
        ok = client.get("/v1/search", params={"q": "rain"})
        assert ok.status_code == 200
        item = ok.json()["items"][0]["id"]
        assert client.get("/readyz").json()["database"]["state"] == "ok"

        # a PostgreSQL that hangs (SIGSTOP): readiness says so within its budget, never waits on it
        proxy.freeze()
        hung = wait_until(lambda: (r := client.get("/readyz")).status_code == 503 and r, 5.0)
        assert hung, client.get("/readyz").json()
        assert hung.json()["database"]["state"] == "down"
        assert max(_timed_get(client, "/readyz")[1] for _ in range(3)) < 1.0

        proxy.refuse()
        # cache misses: a clear 503 with Retry-After, never a 500
        _problem(client.get("/v1/search", params={"q": f"dog {uuid.uuid4().hex[:8]}"}), "store.database")
        _problem(client.post("/v1/classify", data={"id": item, "candidate_labels": ["rain", "dog"]}), "store.database")
        _problem(client.get("/v1/collections"), "store.database")
        # readiness: not ready, with the reason, and still within its budget
        response = wait_until(lambda: (r := client.get("/readyz")).status_code == 503 and r, 5.0)
        assert response, client.get("/readyz").json()
        body = response.json()
        assert body["ready"] is False and body["database"]["state"] == "down"
        assert any(reason.startswith("database:") for reason in body["reasons"])
        _, took = _timed_get(client, "/readyz")
        assert took < 1.0


def test_readiness_reports_the_database_when_it_answers(client):
    body = client.get("/readyz").json()
    assert body["ready"] is True and body["reasons"] == []
    assert body["database"]["state"] == "ok" and body["database"]["detail"].startswith("sqlite")


def test_readiness_details_only_for_authenticated_callers(open_client):
    client = open_client(api_keys=["sesame"])
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
        response = client.get("/readyz", headers=headers)
        assert response.status_code == 200
        assert response.json() == {"ready": True}, headers
    # a key in the URL is never enough (it would be logged)
    assert client.get("/readyz", params={"api_key": "sesame"}).json() == {"ready": True}
    for headers in ({"X-API-Key": "sesame"}, {"Authorization": "Bearer sesame"}):
        body = client.get("/readyz", headers=headers).json()
        assert body["ready"] is True and "indexes" in body and "database" in body, headers
        assert body["hardware"]["model"]["active"], headers  # what the model runs on: operators only


def test_readiness_says_what_the_model_and_faiss_really_run_on(client, capsys):
    """The same report as `indexer status --hardware` (one core function), read from the loaded
    sessions: the providers each graph runs with, a CUDA fallback flag, FAISS's build."""
    import json

    from indexer import cli
    from tests.service.conftest import MODEL

    hardware = client.get("/readyz").json()["hardware"]
    model, index = hardware["model"], hardware["index"]
    assert set(model["active"]) >= {"audio", "text"} and all(model["active"].values())
    assert model["requested"] == "auto" and isinstance(model["fell_back_to_cpu"], bool)
    assert index["build"] in ("cpu", "gpu") and isinstance(index["gpus"], int)
    assert hardware["summary"].startswith(f"model on {model['device'].upper()} (audio: ")
    home = client.app.state.settings.home
    capsys.readouterr()
    assert cli.main(["status", "--hardware", "--json", "--home", str(home), "--model", str(MODEL)]) == 0
    cli_hardware = json.loads(capsys.readouterr().out)["hardware"]
    assert cli_hardware["model"] == model and cli_hardware["index"] == index
