"""The lean path of ``GET /v1/search`` (service/routes/hot.py): it answers only the plain forms it
can check completely, and for those exactly what the FastAPI route answers; auth, errors and
metrics are the same on both paths."""

from __future__ import annotations

import pytest

from service.routes import hot
from tests.service.conftest import assert_problem, metric_samples
from tests.service.conftest import valid_search as valid

QUERY = "rain on a roof"


@pytest.mark.parametrize(
    "query",
    [
        b"q=rain",
        b"q=rain+on+a+roof&limit=7&offset=3",
        b"q=rain&mode=audio&collection=default&output=json",
        b"q=&limit=1",  # blank text: the route's own check answers text.empty on either path
        b"q=%C3%A9t%C3%A9&offset=0",
    ],
)
def test_plain_forms_take_the_lean_path(query):
    assert hot.simple_query(query) is not None


@pytest.mark.parametrize(
    "query",
    [
        b"",
        b"limit=3",  # no q: FastAPI's 422 names the missing field
        b"q=rain&q=snow",  # repeated
        b"q=rain&limit=0",
        b"q=rain&limit=01",
        b"q=rain&limit=%2B1",
        b"q=rain&limit=ten",
        b"q=rain&offset=-1",
        b"q=rain&limit=9999999999",
        b"q=rain&mode=loud",
        b"q=rain&output=csv",
        b"q=rain&segments=true",
        b"q=rain&format=WAV",
        b"q=rain&api_key=secret",  # refused by the guard on the FastAPI path, with its own code
        b"q=rain&unknown=1",
        b"q=rain&collection=" + b"c" * 201,
    ],
)
def test_other_forms_take_the_fastapi_route(query):
    assert hot.simple_query(query) is None


def _without_timing(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "took_ms"}


@pytest.mark.parametrize(
    "params",
    [
        {"q": QUERY},
        {"q": QUERY, "limit": 3, "offset": 2},
        {"q": "tone", "mode": "text"},
        {"q": QUERY, "mode": "audio", "collection": "default"},
    ],
)
def test_lean_and_fastapi_answers_are_the_same(open_client, monkeypatch, params):
    client = open_client()  # no Redis: both answers computed, neither from a cache
    served: list[str] = []
    original = hot.text_search

    async def spy(rt, q, request):
        served.append(q)
        return await original(rt, q, request)

    monkeypatch.setattr(hot, "text_search", spy)
    lean = client.get("/v1/search", params=params)
    # segments=false is the default, but not a form the lean path takes
    full = client.get("/v1/search", params={**params, "segments": "false"})
    assert served == [params["q"]]
    assert _without_timing(valid(lean)) == _without_timing(valid(full))
    assert lean.headers["content-type"] == full.headers["content-type"]


def test_errors_of_the_lean_path_are_the_routes_problems(client):
    assert_problem(client.get("/v1/search", params={"q": "  "}), 422, "text.empty")
    assert_problem(client.get("/v1/search", params={"q": QUERY, "offset": 1001}), 422, "request.offset")
    assert_problem(
        client.get("/v1/search", params={"q": QUERY, "collection": "nope"}), 404, "store.collection_not_found"
    )


def test_the_lean_path_is_guarded_and_counted(open_client):
    secured = open_client(api_keys=["the-key"])
    assert_problem(secured.get("/v1/search", params={"q": QUERY}), 401, "auth.required")
    assert_problem(secured.get("/v1/search", params={"q": QUERY}, headers={"X-API-Key": "wrong"}), 401)
    valid(secured.get("/v1/search", params={"q": QUERY}, headers={"X-API-Key": "the-key"}))
    valid(secured.get("/search", params={"q": QUERY}, headers={"Authorization": "Bearer the-key"}))
    samples = metric_samples(
        secured.get("/metrics", headers={"X-API-Key": "the-key"}).text, "clapsearch_request_seconds_count"
    )
    counts = {(dict(labels)["route"], dict(labels)["status"]): n for labels, n in samples.items()}
    assert counts[("/v1/search", "401")] == 2 and counts[("/v1/search", "200")] == 1
    assert counts[("/search", "200")] == 1


def test_url_for_still_finds_the_documented_routes(client):
    """The lean route names nothing: ``url_path_for`` walks past it to the FastAPI routes."""
    assert client.app.url_path_for("search_text") in ("/v1/search", "/search")
    assert client.app.url_path_for("openapi") == "/openapi.json"
