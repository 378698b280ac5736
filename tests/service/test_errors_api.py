"""Foreign failures get their meaning, not a bare 500: a database that refuses connections
answers 503 store.database (with Retry-After, the connection kept open), a bug 500 internal."""

from __future__ import annotations

import sqlalchemy as sa

from tests.service.conftest import assert_problem


def _refused_connection() -> Exception:
    engine = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    try:
        engine.connect()
    except Exception as exc:
        return exc
    raise AssertionError("port 1 accepted a connection")


def test_a_refusing_database_answers_503_store_database(open_client, item_ids, monkeypatch):
    client = open_client()
    refused = _refused_connection()
    db = client.app.state.runtime.store.db

    def session():
        raise refused

    monkeypatch.setattr(db, "session", session)
    for path in (f"/v1/items/{item_ids['rain.flac']}", f"/v1/items/{item_ids['rain.flac']}/similar"):
        response = client.get(path)
        body = assert_problem(response, 503, "store.database")
        assert response.headers["retry-after"] == "5" and "unavailable" in body["detail"]
        assert "psycopg" not in body["title"]
    monkeypatch.undo()
    assert client.get(f"/v1/items/{item_ids['rain.flac']}").status_code == 200


def test_a_bug_is_a_logged_500_that_names_no_internals(open_client, item_ids, monkeypatch):
    client = open_client()
    db = client.app.state.runtime.store.db

    def session():
        raise KeyError("secret_internal_name")

    monkeypatch.setattr(db, "session", session)
    body = assert_problem(client.get(f"/v1/items/{item_ids['rain.flac']}"), 500, "service.internal")
    assert "secret_internal_name" not in str(body)
