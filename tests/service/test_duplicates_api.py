"""``GET /v1/duplicates``: the groups the core finds (the same as ``indexer duplicates --json``),
in the list envelope, paged; bad input is a problem (422/404), never a 500."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.dup_library import GROUPS, MODEL, ingest, ingested_library
from tests.service.conftest import assert_problem, service_settings, settle


@pytest.fixture(scope="module")
def dup_home(tmp_path_factory) -> Path:
    return ingested_library(tmp_path_factory)[1]


@pytest.fixture(scope="module")
def api(dup_home):
    from fastapi.testclient import TestClient

    from service.app import create_app

    with TestClient(create_app(service_settings(dup_home)), raise_server_exceptions=False) as client:
        yield client
        settle(client)


def _groups(body: dict) -> list[set[str]]:
    return [{Path(m["path"]).name for m in g["members"]} for g in body["items"]]


def test_groups_in_the_list_envelope(api):
    from service.schemas import DuplicateList

    response = api.get("/v1/duplicates", params={"threshold": 0.9})
    assert response.status_code == 200, response.text
    body = response.json()
    DuplicateList.model_validate(body)
    assert {"items", "total", "limit", "offset"} <= set(body)
    assert body["total"] == 1 and body["limit"] == 50 and body["offset"] == 0 and body["files"] == 8
    assert _groups(body) == [set(GROUPS["applause"])]
    group = body["items"][0]
    assert group["score_min"] >= 0.9 and "vector similarity" in group["reason"]
    assert api.get("/v1/duplicates", params={"threshold": 0.9, "offset": 1}).json()["items"] == []
    strict = api.get("/v1/duplicates", params={"threshold": 0.999}).json()
    assert _groups(strict) == [{"applause.wav", "applause_quiet.flac"}]


def test_api_and_cli_give_the_same_groups(api, dup_home, capsys):
    from indexer.cli import main

    assert main(["duplicates", "--home", str(dup_home), "--model", str(MODEL), "--threshold", "0.9", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    served = api.get("/v1/duplicates", params={"threshold": 0.9}).json()
    assert cli["items"] == served["items"] and cli["total"] == served["total"]


@pytest.mark.parametrize(
    "params, status, code",
    [
        ({"threshold": 0}, 422, "request.invalid"),
        ({"threshold": 1.5}, 422, "request.invalid"),
        ({"threshold": -1}, 422, "request.invalid"),
        ({"threshold": "nan"}, 422, "request.invalid"),
        ({"threshold": "abc"}, 422, "request.invalid"),
        ({"limit": 0}, 422, "request.invalid"),
        ({"min_group": 1}, 422, "request.invalid"),
        ({"collection": "nope"}, 404, "store.collection_not_found"),
        ({"collection": "../etc"}, 404, "store.collection_not_found"),
        ({"collection": "x" * 300}, 422, "request.invalid"),
    ],
)
def test_bad_input_is_a_problem_never_a_500(api, params, status, code):
    assert_problem(api.get("/v1/duplicates", params=params), status, code)


def test_empty_collection_has_no_groups(dup_home, tmp_path):
    from fastapi.testclient import TestClient

    from service.app import create_app

    home = tmp_path / "home"
    shutil.copytree(dup_home, home, symlinks=True)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "garbage.wav").write_bytes(b"no audio here" * 200)
    ingest(home, [bad], collection="empty")  # a collection whose only file failed
    with TestClient(create_app(service_settings(home)), raise_server_exceptions=False) as client:
        response = client.get("/v1/duplicates", params={"collection": "empty"})
        settle(client)
    assert response.status_code == 200, response.text
    assert response.json()["items"] == [] and response.json()["total"] == 0 and response.json()["files"] == 0
