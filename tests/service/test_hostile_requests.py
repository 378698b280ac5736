"""Hostile requests from the issue-16 probe: each gets a clear problem, never a 500, and leaves
the server answering (collection names of dots, huge ids, long lists, long or broken paths,
files swapped for symlinks)."""

from __future__ import annotations

import json

import pytest

from tests.service.conftest import assert_problem


@pytest.fixture
def ingest_client(open_client, home_copy, tmp_path):
    (tmp_path / "lib").mkdir()
    return open_client(home_copy, allowed_ingest_roots=[tmp_path / "lib"])


@pytest.mark.parametrize("name", [".", "..", "...", ".hidden", "-x", "a" * 65, "a/b", "a~rebuild"])
def test_a_collection_name_outside_the_rule_is_refused_before_a_job_exists(ingest_client, tmp_path, name):
    r = ingest_client.post("/v1/jobs/ingest", json={"path": str(tmp_path / "lib"), "collection": name})
    body = assert_problem(r, 422)
    assert body["code"] in ("store.collection_name", "request.invalid")
    assert ingest_client.get("/v1/jobs").json()["items"] == []
    assert ingest_client.get("/v1/collections").status_code == 200
    assert not (tmp_path / "home" / ".lock").exists()


def test_the_store_refuses_a_dot_collection_name_with_a_code(home_copy):
    from indexer.errors import CollectionNameError
    from indexer.settings import IndexerSettings
    from indexer.store import catalog
    from indexer.store.store import Store

    store = Store.open(IndexerSettings(home=home_copy))
    try:
        for name in (".", "..", "..."):
            with pytest.raises(CollectionNameError) as caught:
                store.open_collection(name)
            assert caught.value.code == "store.collection_name"
            with pytest.raises(CollectionNameError), store.lock(name):
                pass
        assert catalog.check_collection_name("rain_2024.v1-b") == "rain_2024.v1-b"
        assert catalog.check_collection_name("x~rebuild", shadow_ok=True) == "x~rebuild"
    finally:
        store.close()
    assert not (home_copy / "indexes" / ".lock").exists() and not (home_copy / ".lock").exists()


def test_cli_ingest_refuses_a_dot_collection(home_copy, tmp_path, capsys):
    from indexer import cli

    (tmp_path / "lib").mkdir()
    code = cli.main(["ingest", str(tmp_path / "lib"), "--home", str(home_copy), "-c", "..", "-q"])
    assert code == 2 and "error [store.collection_name]" in capsys.readouterr().err
    assert not (home_copy / ".lock").exists()


# ---------------------------------------------------------------------- bounds (issue 16 #7)
HUGE = [2**63, 2**64, 10**30, -(2**70)]


@pytest.mark.parametrize("item_id", HUGE)
def test_ids_beyond_64_bits_are_a_clear_4xx_on_every_id_route(client, item_id):
    for method, url, kw in [
        ("get", f"/v1/items/{item_id}", {}),
        ("get", f"/v1/items/{item_id}/audio", {}),
        ("get", f"/v1/items/{item_id}/peaks", {}),
        ("get", f"/v1/items/{item_id}/similar", {}),
        ("get", f"/v1/search/audio?id={item_id}", {}),
        ("post", f"/v1/search/audio?id={item_id}", {}),
        ("post", f"/v1/search/texts?id={item_id}", {"json": {"texts": ["rain"]}}),
        ("post", "/v1/classify", {"data": {"id": str(item_id), "labels": "rain"}}),
        ("post", f"/v1/classify?id={item_id}", {"data": {"labels": "rain"}}),
        ("get", f"/v1/jobs/{item_id}", {}),
    ]:
        r = getattr(client, method)(url, **kw)
        assert r.status_code < 500 and r.status_code != 200, (url, r.status_code, r.text[:300])
        assert_problem(r, r.status_code)


@pytest.mark.parametrize("param", ["tag", "format"])
def test_a_thousand_list_values_are_refused_at_the_edge(client, param):
    query = "&".join(f"{param}=v{i}" for i in range(1000))
    r = client.get(f"/v1/search?q=rain&{query}")
    assert_problem(r, 422)
    ok = "&".join(f"{param}=v{i}" for i in range(32))
    assert client.get(f"/v1/search?q=rain&{ok}").status_code == 200


def test_search_filters_bound_their_lists_in_the_core():
    from indexer.errors import QueryError
    from indexer.filters import MAX_FILTER_VALUES, SearchFilters

    SearchFilters(tags=tuple("t" * MAX_FILTER_VALUES))
    with pytest.raises(QueryError):
        SearchFilters(tags=tuple(f"t{i}" for i in range(MAX_FILTER_VALUES + 1)))
    with pytest.raises(QueryError):
        SearchFilters(formats=tuple(f"f{i}" for i in range(1000)))


@pytest.mark.parametrize("tail", ["a" * 4096, "a" * 300, "a/" * 3000, "\udcff\udcfe", "b/../" * 1000])
def test_long_or_unencodable_ingest_paths_are_refused_not_500(ingest_client, tmp_path, tail):
    path = str(tmp_path / "lib") + "/" + tail
    # json.dumps writes lone surrogates as \udcff escapes: valid JSON that decodes to them
    r = ingest_client.post(
        "/v1/jobs/ingest", content=json.dumps({"path": path}), headers={"content-type": "application/json"}
    )
    assert r.status_code < 500, r.text[:300]
    assert_problem(r, 404 if len(tail) < 4000 and "\udcff" not in tail else 422)
    assert ingest_client.get("/v1/jobs").status_code == 200


def test_a_dot_collection_left_by_an_older_version_no_longer_breaks_listings(open_client, home_copy, capsys):
    import sqlite3

    from indexer import cli

    with sqlite3.connect(home_copy / "clapsearch.db") as db:
        row = list(db.execute("SELECT * FROM collections LIMIT 1").fetchone())
        columns = [c[1] for c in db.execute("PRAGMA table_info(collections)")]
        values = dict(zip(columns, row), id=None, name="..")
        db.execute(
            f"INSERT INTO collections ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
            list(values.values()),
        )
    client = open_client(home_copy)
    r = client.get("/v1/collections")
    assert r.status_code == 200 and ".." not in [c["name"] for c in r.json()["items"]]
    capsys.readouterr()
    assert cli.main(["status", "--home", str(home_copy)]) == 0, capsys.readouterr()
