"""The service's long-lived state: readiness, an empty home, hot reload of newly published
index versions without a restart, Redis down / Redis up (result cache), PostgreSQL."""

from __future__ import annotations

import random
import uuid

import pytest

from tests.helpers import wait_until
from tests.service.conftest import (
    LONG,
    TRACKS,
    assert_problem,
    ingest,
    metric_samples,
    names,
    valid_search,
    write_new_file,
)

DEAD_REDIS = "redis://127.0.0.1:1/0"


def _wait_for(predicate, timeout_s: float = 30.0):
    """``predicate``'s first truthy value; fails the test after ``timeout_s``."""
    value = wait_until(predicate, timeout_s, every_s=0.05)
    assert value, "condition never became true"
    return value


def _search(client, q, **params):
    return valid_search(client.get("/v1/search", params={"q": q, "limit": 100, **params}))


def _upload_search(client, path):
    return valid_search(
        client.post(
            "/v1/search/audio", params={"limit": 3}, files={"file": (path.name, path.read_bytes(), "audio/wav")}
        )
    )


def _unique(text: str) -> str:
    """A query no earlier run cached (Redis outlives test runs)."""
    return f"{text} {uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------- readiness


def test_readiness_detail(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    ready = response.json()
    assert ready["ready"] is True
    assert ready["model"]["loaded"] is True and ready["model"]["name"] == "clapsearch-sfx-v1"
    assert ready["model"]["fingerprint"] and ready["model"]["variant"]
    assert ready["model"]["providers"]
    assert set(ready["indexes"]) == {"default/files", "default/segments"}
    assert ready["indexes"]["default/files"]["n_vectors"] == len(TRACKS)
    assert ready["indexes"]["default/segments"]["n_vectors"] == 4
    assert ready["index_errors"] == {}
    assert ready["vocabulary"]["labels"] > 500
    assert ready["redis"]["state"] == "disabled"


def test_empty_home_is_ready_and_serves_what_is_ingested_later(open_client, tmp_path):
    home = tmp_path / "fresh-home"
    client = open_client(home=home)
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True and ready.json()["indexes"] == {}
    assert_problem(client.get("/v1/search", params={"q": "rain"}), 404, "store.collection_not_found")
    clip = write_new_file(tmp_path / "lib")
    assert_problem(
        client.post("/v1/search/audio", files={"file": ("c.wav", clip.read_bytes(), "audio/wav")}),
        404,
        "store.collection_not_found",
    )
    assert client.get("/v1/collections").json() == {"items": [], "total": 0, "limit": 100, "offset": 0}

    second = write_new_file(tmp_path / "lib", "second.wav", freq=150.0)
    assert ingest(home, [tmp_path / "lib"]).embedded == 2
    assert sorted(names(client.get("/v1/search", params={"q": "rain"}))) == ["fresh_chirp.wav", "second.wav"]
    assert _upload_search(client, second)["items"][0]["name"] == "second.wav"
    assert client.get("/readyz").json()["indexes"]["default/files"]["n_vectors"] == 2


# ----------------------------------------------------------------------------- hot reload


def test_hot_reload_switches_to_the_new_version_without_restart(open_client, home_copy, tmp_path):
    client = open_client(home=home_copy, reload_poll_s=3600)
    new = write_new_file(tmp_path / "new")
    before = _search(client, "a chirp")
    assert new.name not in [h["name"] for h in before["items"]] and before["index_version"] == 1

    assert ingest(home_copy, [tmp_path / "new"]).embedded == 1
    # published, but this replica has not looked yet: it still serves the old version
    assert _search(client, "a chirp")["index_version"] == 1

    client.app.state.runtime.reload()
    after = _search(client, "a chirp")
    assert after["index_version"] == 2
    assert sorted(h["name"] for h in after["items"]) == sorted([t.name for t in TRACKS] + [new.name])
    top = _upload_search(client, new)["items"][0]
    assert top["name"] == new.name and top["score"] == pytest.approx(1.0, abs=2e-3)
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and ready["index_errors"] == {}
    assert ready["indexes"]["default/files"] == {
        "version": 2,
        "n_vectors": len(TRACKS) + 1,
        "generation": ready["indexes"]["default/files"]["generation"],
    }
    assert metric_samples(client.get("/metrics").text, "clapsearch_index_reloads_total")[()] >= 1
    item = client.get(f"/v1/items/{top['id']}")
    assert item.status_code == 200 and item.json()["path"] == str(new)


def test_hot_reload_by_polling(open_client, home_copy, tmp_path):
    client = open_client(home=home_copy, reload_poll_s=0.2)
    new = write_new_file(tmp_path / "new", "polled.wav", freq=2600.0)
    assert ingest(home_copy, [tmp_path / "new"]).embedded == 1
    _wait_for(lambda: new.name in names(client.get("/v1/search", params={"q": "a beep", "limit": 100})))
    assert client.get("/readyz").json()["watcher"]["polls"] >= 1
    # segments searches see the new short file too (it spans the whole file)
    hits = _search(client, "a beep", segments="true")["items"]
    assert [(h["start_s"], h["end_s"]) for h in hits if h["name"] == new.name] == [(0.0, 2.0)]


def test_a_failed_reload_keeps_serving_the_old_version(open_client, home_copy, tmp_path):
    """A published version that cannot be loaded (here: a damaged index file) is reported in
    readiness; the previous version goes on answering and the replica stays ready."""
    client = open_client(home=home_copy, reload_poll_s=3600)
    before = _search(client, "a chirp")
    write_new_file(tmp_path / "new", "damaged.wav")
    assert ingest(home_copy, [tmp_path / "new"]).embedded == 1
    files = home_copy / "indexes" / "default" / "files"
    live = files / (files / "CURRENT").read_text().strip()
    assert live.name != "v000001"
    (live / "index.faiss").write_bytes(b"not a faiss index")

    client.app.state.runtime.reload()
    after = _search(client, "a chirp")
    assert after["index_version"] == 1 and after["items"] == before["items"]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert "default/files" in ready.json()["index_errors"]
    assert ready.json()["indexes"]["default/files"]["version"] == 1


# ----------------------------------------------------------------------------- Redis


def test_redis_down_changes_nothing_users_see(open_client, library, item_ids):
    client = open_client(redis_url=DEAD_REDIS, redis_timeout_s=0.1)
    first = _search(client, "dog barking")
    second = _search(client, "dog barking")
    assert first["cached"] is False and second["cached"] is False
    assert [h["id"] for h in first["items"]] == [h["id"] for h in second["items"]]
    assert len(first["items"]) == len(TRACKS)
    assert _upload_search(client, library.path("roof.wav"))["items"][0]["name"] == "roof.wav"
    assert client.get(f"/v1/items/{item_ids['roof.wav']}/peaks").status_code == 200
    assert (
        client.post("/v1/classify", data={"id": item_ids["roof.wav"], "candidate_labels": ["rain", "dog"]}).status_code
        == 200
    )
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True and ready.json()["redis"]["state"] == "down"


def _cached_page(client, q, **params):
    """Repeat ``q`` until it is answered from the cache (the first answer is cached in the
    background, after the response); returns (first, cached) responses."""
    first = _search(client, q, **params)
    cached = _wait_for(lambda: (r := _search(client, q, **params))["cached"] and r)
    return first, cached


@pytest.mark.needs_redis
def test_repeated_query_is_cached_until_a_new_version_is_published(open_client, redis_url, home_copy, tmp_path):
    client = open_client(home=home_copy, redis_url=redis_url)
    assert client.get("/readyz").json()["redis"]["state"] == "ok"
    q = _unique("a dog barking far away")
    first, cached = _cached_page(client, q)
    assert first["cached"] is False and cached["cached"] is True
    assert cached["items"] == first["items"]
    assert cached["index_version"] == first["index_version"] == 1
    hits = metric_samples(client.get("/metrics").text, "clapsearch_cache_total")
    assert hits[(("kind", "result"), ("result", "hit"))] >= 1
    # other pages and filters are other entries
    assert _search(client, q, limit=2)["cached"] is False
    assert _search(client, q, format="WAV")["cached"] is False
    # the POST alias shares the cache with GET
    assert client.post("/search", params={"q": q, "limit": 100}).json()["cached"] is True

    new = write_new_file(tmp_path / "new", "cached_out.wav", freq=2900.0)
    assert ingest(home_copy, [tmp_path / "new"]).embedded == 1
    client.app.state.runtime.reload()
    fresh = _search(client, q)
    assert fresh["cached"] is False and fresh["index_version"] == 2
    assert new.name in [h["name"] for h in fresh["items"]]
    _, again = _cached_page(client, q)
    assert again["items"] == fresh["items"]


@pytest.mark.needs_redis
def test_uploads_are_never_answered_from_the_result_cache(open_client, redis_url, library):
    client = open_client(redis_url=redis_url)
    path = library.path("birds.ogg")
    for _ in range(3):
        response = client.post("/v1/search/audio", files={"file": ("q.ogg", path.read_bytes(), "audio/ogg")})
        assert response.json()["cached"] is False and response.json()["items"][0]["name"] == "birds.ogg"


@pytest.mark.needs_redis
def test_cached_embeddings_give_the_same_classification(open_client, redis_url, item_ids):
    client = open_client(redis_url=redis_url, text_vector_cache_size=0)  # Redis alone, as replicas share it
    data = {"id": item_ids["rain.flac"], "candidate_labels": [_unique("rain"), _unique("a dog"), "an engine"]}

    def embedding_hits():
        return metric_samples(client.get("/metrics").text, "clapsearch_cache_total").get(
            (("kind", "embedding"), ("result", "hit")), 0
        )

    first = client.post("/v1/classify", data=data).json()["labels"]
    answers = []

    def from_cache():
        before = embedding_hits()
        answers.append(client.post("/v1/classify", data=data).json()["labels"])
        return embedding_hits() - before == 3  # all three texts came from Redis

    _wait_for(from_cache)
    assert all(answer == first for answer in answers)


@pytest.mark.needs_redis
def test_exclude_self_is_part_of_the_cached_answer(open_client, redis_url, item_ids):
    client = open_client(redis_url=redis_url)
    item = item_ids["tone_660.wav"]
    params = {"id": item, "limit": 100, "min_score": -1 + random.random() * 1e-6}  # a fresh cache entry
    excluded = _wait_for(lambda: (r := client.post("/v1/search/audio", params=params).json())["cached"] and r)
    assert item not in [h["id"] for h in excluded["items"]]
    included = client.post("/v1/search/audio", params={**params, "exclude_self": "false"}).json()
    assert included["items"][0]["id"] == item


@pytest.mark.needs_redis
def test_result_cache_is_not_shared_between_stores(open_client, redis_url, tmp_path):
    """Two libraries, each ingested the same way into its own home (same collection id, index
    version and generation), one Redis: neither is answered with the other's page."""
    homes = {}
    for side, freqs in (("mine", (800.0, 1600.0)), ("theirs", (450.0, 3000.0))):
        files = [write_new_file(tmp_path / side, f"{side}_{i}.wav", freq=f) for i, f in enumerate(freqs)]
        assert ingest(tmp_path / f"{side}-home", [tmp_path / side]).embedded == 2
        homes[side] = (open_client(home=tmp_path / f"{side}-home", redis_url=redis_url), {p.name for p in files})
    q = _unique("a quiet room")
    (mine, my_files), (theirs, their_files) = homes["mine"], homes["theirs"]
    assert mine.get("/readyz").json()["indexes"] == theirs.get("/readyz").json()["indexes"]
    _, cached = _cached_page(mine, q)
    assert {h["name"] for h in cached["items"]} == my_files
    answer = _search(theirs, q)
    assert {h["name"] for h in answer["items"]} == their_files, answer["cached"]


# ----------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_url(pg_db) -> str:
    """A fresh PostgreSQL database for one test (tests/conftest.py's pg_db), as a URL string."""
    return pg_db.render_as_string(hide_password=False)


@pytest.mark.needs_postgres
def test_postgresql_store(open_client, pg_url, library, tmp_path):
    home = tmp_path / "pg-home"
    stats = ingest(home, [library.root], database_url=pg_url)
    assert stats.embedded == len(TRACKS) and stats.failed == 1
    client = open_client(home=home, database_url=pg_url)
    assert client.get("/readyz").json()["ready"] is True
    everything = _search(client, "rain on a roof")["items"]
    assert sorted(h["name"] for h in everything) == sorted(t.name for t in TRACKS)
    # filters run in PostgreSQL's SQL (JSON tags cast to text, substr on paths)
    assert sorted(names(client.get("/v1/search", params={"q": "rain", "tag": "genre:ambient"}))) == [
        "rain.flac",
        "roof.wav",
    ]
    assert sorted(names(client.get("/v1/search", params={"q": "rain", "format": "ogg"}))) == ["birds.ogg", "hum.ogg"]
    assert sorted(
        names(client.get("/v1/search", params={"q": "rain", "path_prefix": str(library.root / "tones")}))
    ) == sorted(t.name for t in TRACKS if t.rel.startswith("tones/"))
    segments = _search(client, "rain", segments="true")["items"]
    spans = sorted((h["start_s"], h["end_s"]) for h in segments if h["name"] == LONG)
    assert 1 <= len(spans) <= 4 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # distinct moments
    top = _upload_search(client, library.path("roof.wav"))["items"][0]
    assert top["name"] == "roof.wav"
    item = client.get(f"/v1/items/{top['id']}").json()
    assert item["tags"] == {"title": "Rain on roof", "genre": "Ambient"} and item["format"] == "WAV"
    similar = client.get(f"/v1/items/{top['id']}/similar").json()["items"]
    assert top["id"] not in [h["id"] for h in similar]
    info = client.get("/v1/collections/default").json()
    assert info["files"] == len(TRACKS) and info["failed"] == 1
