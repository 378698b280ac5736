"""Hostile requests from the issue-16 probe: each gets a clear problem, never a 500, and leaves
the server answering (collection names of dots, huge ids, long lists, long or broken paths,
files swapped for symlinks)."""

from __future__ import annotations

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
    assert ingest_client.get("/v1/jobs").json() == []
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
