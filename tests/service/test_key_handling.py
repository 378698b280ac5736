"""Issue 16, defect 10: API keys never travel in URLs, media use a signed HttpOnly cookie, and wrong
keys are rate limited per client address."""

from __future__ import annotations

import logging

import pytest

from service.security import MEDIA_COOKIE, MediaCookies, _RedactKeys
from tests.service.conftest import assert_problem

KEYS = ["key-one-secret", "key-two-secret"]


@pytest.fixture
def secured(open_client):
    return open_client(api_keys=KEYS, auth_failures_per_minute=3)


def test_a_key_in_the_url_is_refused_even_the_right_one(secured, open_client, item_ids):
    item = item_ids["tone_440.wav"]
    for path in ("/v1/collections", f"/v1/items/{item}/audio", f"/v1/items/{item}/peaks"):
        body = assert_problem(secured.get(path, params={"api_key": KEYS[0]}), 400, "auth.key_in_url")
        assert KEYS[0] not in body["detail"]
    # open servers too: a key in a URL leaks wherever it is sent
    assert_problem(open_client().get("/v1/collections", params={"api_key": "x"}), 400, "auth.key_in_url")


def test_the_access_log_never_shows_a_key():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4", "GET", "/v1/x?a=1&api_key=s3cret&b=2", "1.1", 400),
        None,
    )
    _RedactKeys().filter(record)
    assert "s3cret" not in record.getMessage() and "a=1" in record.getMessage() and "b=2" in record.getMessage()


def test_wrong_keys_are_rate_limited_per_address(secured):
    for _ in range(3):
        assert_problem(secured.get("/v1/collections", headers={"X-API-Key": "guess"}), 401, "auth.invalid_key")
    refused = secured.get("/v1/collections", headers={"X-API-Key": "guess"})
    assert_problem(refused, 429, "auth.rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    # the address is locked out, right key or not, until the budget refills (20 s at 3 a minute)
    assert_problem(secured.get("/v1/collections", headers={"X-API-Key": KEYS[0]}), 429, "auth.rate_limited")


def test_right_keys_and_missing_keys_cost_nothing(secured):
    for _ in range(6):
        assert_problem(secured.get("/v1/collections"), 401, "auth.required")
        assert secured.get("/v1/collections", headers={"X-API-Key": KEYS[1]}).status_code == 200


def test_the_media_cookie_authorises_item_audio_and_nothing_else(secured, item_ids):
    item = item_ids["tone_440.wav"]
    assert_problem(secured.post("/v1/media-session"), 401, "auth.required")
    assert_problem(secured.get(f"/v1/items/{item}/audio"), 401, "auth.required")
    made = secured.post("/v1/media-session", headers={"X-API-Key": KEYS[0]})
    assert made.status_code == 204
    cookie = made.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and "path=/v1/items/" in cookie.lower()
    assert KEYS[0] not in cookie
    # the client's cookie jar now sends it (path /v1/items/): audio plays without a header
    audio = secured.get(f"/v1/items/{item}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"].startswith("audio/")
    assert secured.get(f"/v1/items/{item}/peaks").status_code == 200
    # it reads media; it cannot search or write, even if sent there
    token = secured.cookies.get(MEDIA_COOKIE)
    secured.cookies.clear()
    secured.cookies.set(MEDIA_COOKIE, token)  # sent everywhere now, not only under /v1/items/
    assert_problem(secured.get("/v1/search", params={"q": "rain"}), 401)
    assert_problem(secured.post("/v1/classify"), 401)
    secured.cookies.clear()
    secured.cookies.set(MEDIA_COOKIE, token.split(".")[0] + "." + "0" * 64)
    assert_problem(secured.get(f"/v1/items/{item}/audio"), 401, "auth.required")


def test_media_cookies_expire_and_die_with_the_keys(monkeypatch):
    cookies = MediaCookies([b"k1"])
    token = cookies.issue()
    assert cookies.valid(token) and not cookies.valid(None) and not cookies.valid("garbage")
    assert not MediaCookies([b"k2"]).valid(token)  # other keys: void
    assert MediaCookies([b"k1"]).valid(token)  # another worker with the same keys: accepted
    import service.security as security

    later = security.time.time() + security.MEDIA_TTL_S + 5
    monkeypatch.setattr(security.time, "time", lambda: later)
    assert not cookies.valid(token)
