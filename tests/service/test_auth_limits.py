"""API keys (X-API-Key, Bearer; never ?api_key=: tests/service/test_key_handling.py) and per-key token-bucket rate limits."""

from __future__ import annotations

import pytest

from tests.service.conftest import assert_problem

KEYS = ["key-one-secret", "key-two-secret"]


@pytest.fixture
def secured(open_client):
    return open_client(api_keys=KEYS)


def _protected(item_ids) -> list[tuple[str, str, dict]]:
    item = item_ids["tone_440.wav"]
    return [
        ("GET", "/v1/search", {"params": {"q": "rain"}}),
        ("POST", "/search", {"params": {"q": "rain"}}),
        ("POST", "/v1/search/audio", {"params": {"id": item}}),
        ("POST", "/v1/search/texts", {"params": {"id": item, "limit": 3}}),
        ("POST", "/v1/classify", {"data": {"id": item, "candidate_labels": ["a", "b"]}}),
        ("GET", f"/v1/items/{item}", {}),
        ("GET", f"/v1/items/{item}/audio", {}),
        ("GET", f"/v1/items/{item}/peaks", {}),
        ("GET", f"/v1/items/{item}/similar", {}),
        ("GET", "/v1/collections", {}),
        ("GET", "/v1/collections/default", {}),
        ("GET", "/v1/jobs", {}),
    ]


def test_every_api_route_needs_a_key(secured, item_ids):
    for method, path, kw in _protected(item_ids):
        response = secured.request(method, path, **kw)
        body = assert_problem(response, 401, "auth.required")
        assert response.headers["www-authenticate"].startswith("Bearer"), path
        assert body["instance"] == path


def test_a_wrong_key_is_401(secured):
    for headers in (
        {"X-API-Key": "nope"},
        {"Authorization": "Bearer nope"},
        {"X-API-Key": KEYS[0][:-1]},
        {"X-API-Key": KEYS[0] + "x"},
    ):
        response = secured.get("/v1/collections", headers=headers)
        assert_problem(response, 401, "auth.invalid_key")
        assert "invalid_token" in response.headers["www-authenticate"]


def test_every_accepted_way_to_send_a_key(secured, item_ids):
    for method, path, kw in _protected(item_ids):
        for headers, params in (
            ({"X-API-Key": KEYS[0]}, {}),
            ({"Authorization": f"Bearer {KEYS[1]}"}, {}),
            ({"Authorization": f"bearer {KEYS[0]}"}, {}),
        ):
            response = secured.request(
                method, path, headers=headers, params={**kw.get("params", {}), **params}, data=kw.get("data")
            )
            assert response.status_code == 200, (path, headers, params, response.text[:200])


def test_health_readiness_page_and_docs_need_no_key(secured):
    for path in ("/healthz", "/readyz", "/", "/openapi.json"):
        assert secured.get(path).status_code == 200, path


def test_metrics_need_a_key_unless_public(secured, open_client):
    assert_problem(secured.get("/metrics"), 401, "auth.required")
    assert secured.get("/metrics", headers={"X-API-Key": KEYS[0]}).status_code == 200
    public = open_client(api_keys=KEYS, metrics_public=True)
    response = public.get("/metrics")
    assert response.status_code == 200 and "clapsearch_stage_seconds" in response.text
    assert_problem(public.get("/v1/collections"), 401, "auth.required")  # only metrics are public


def test_no_keys_configured_is_open(client):
    assert client.get("/v1/collections").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_rate_limit_per_key(open_client, item_ids):
    limited = open_client(api_keys=KEYS, rate_limit_per_minute=60, rate_limit_burst=3)
    one, two = {"X-API-Key": KEYS[0]}, {"X-API-Key": KEYS[1]}
    path = f"/v1/items/{item_ids['tone_440.wav']}"
    assert [limited.get(path, headers=one).status_code for _ in range(3)] == [200, 200, 200]
    refused = limited.get(path, headers=one)
    body = assert_problem(refused, 429, "auth.rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    assert "retry" in body["detail"]
    # the key is the unit: the same key sent another way is limited too, another key is not
    assert_problem(limited.get(path, headers={"Authorization": f"Bearer {KEYS[0]}"}), 429, "auth.rate_limited")
    assert limited.get(path, headers=two).status_code == 200
    # refused keys do not take tokens from anyone; health is never limited
    assert_problem(limited.get(path, headers={"X-API-Key": "wrong"}), 401, "auth.invalid_key")
    assert limited.get("/healthz").status_code == 200 and limited.get("/readyz").status_code == 200


def test_rate_limit_without_keys_is_per_client(open_client):
    limited = open_client(rate_limit_per_minute=60, rate_limit_burst=2)
    assert [limited.get("/v1/collections").status_code for _ in range(2)] == [200, 200]
    assert_problem(limited.get("/v1/collections"), 429, "auth.rate_limited")


def test_unlimited_by_default(open_client):
    free = open_client(api_keys=KEYS)
    assert {free.get("/v1/collections", headers={"X-API-Key": KEYS[0]}).status_code for _ in range(30)} == {200}
