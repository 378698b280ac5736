"""Items (metadata, audio with HTTP Range, peaks), collections, health, metrics, OpenAPI."""

from __future__ import annotations

import pytest

from tests.service.conftest import LONG, TRACKS, assert_problem, metric_samples

# ----------------------------------------------------------------------------- items


def test_item_metadata(client, library, item_ids):
    for name in ("rain.flac", LONG, "beep.mp3"):
        response = client.get(f"/v1/items/{item_ids[name]}")
        assert response.status_code == 200, response.text
        item = response.json()
        track = library.tracks[name]
        path = library.path(name)
        assert item["id"] == item_ids[name] and item["collection"] == "default"
        assert item["path"] == str(path) and item["name"] == name
        assert item["size"] == path.stat().st_size
        assert item["format"] == track.format and item["sample_rate"] == 16_000 and item["channels"] == 1
        assert item["duration_s"] == pytest.approx(track.seconds, abs=0.05)
        assert item["tags"] == track.tags  # {} when the file has none, never null
        assert item["status"] == "indexed" and item["error_code"] is None
        assert item["n_segments"] == (4 if name == LONG else 0)
        assert item["audio_url"] == f"/v1/items/{item['id']}/audio"
        assert item["peaks_url"] == f"/v1/items/{item['id']}/peaks"


def test_failed_item_says_why(client, item_ids):
    item = client.get(f"/v1/items/{item_ids['garbage.wav']}").json()
    assert item["status"] == "failed" and item["error_code"] == "audio.decode"
    # its waveform cannot be drawn: a 4xx problem, not a crash
    response = client.get(f"/v1/items/{item_ids['garbage.wav']}/peaks")
    assert 400 <= response.status_code < 500
    assert_problem(response, response.status_code)


def test_audio_is_the_file(client, library, item_ids):
    for name, media in (
        ("rain.flac", "audio/flac"),
        ("birds.ogg", "audio/ogg"),
        ("roof.wav", "audio/wav"),
        ("beep.mp3", "audio/mpeg"),
    ):
        response = client.get(f"/v1/items/{item_ids[name]}/audio")
        assert response.status_code == 200
        assert response.content == library.path(name).read_bytes()
        assert response.headers["content-type"].startswith(media)
        assert response.headers["accept-ranges"] == "bytes"


def test_audio_range_request(client, library, item_ids):
    data = library.path(LONG).read_bytes()
    response = client.get(f"/v1/items/{item_ids[LONG]}/audio", headers={"Range": "bytes=10-99"})
    assert response.status_code == 206
    assert response.content == data[10:100]
    assert response.headers["content-range"] == f"bytes 10-99/{len(data)}"
    assert int(response.headers["content-length"]) == 90
    tail = client.get(f"/v1/items/{item_ids[LONG]}/audio", headers={"Range": f"bytes={len(data) - 5}-"})
    assert tail.status_code == 206 and tail.content == data[-5:]


def test_peaks(client, library, item_ids):
    response = client.get(f"/v1/items/{item_ids['hum.ogg']}/peaks", params={"n": 50})
    assert response.status_code == 200, response.text
    peaks = response.json()
    assert peaks["n"] == 50 and len(peaks["min"]) == 50 and len(peaks["max"]) == 50
    assert peaks["duration_s"] == pytest.approx(library.tracks["hum.ogg"].seconds, abs=0.05)
    assert all(lo <= hi for lo, hi in zip(peaks["min"], peaks["max"]))
    # the tone's amplitude is 0.3 (plus a little noise), in every bucket
    assert all(0.2 < hi < 0.45 for hi in peaks["max"])
    assert all(-0.45 < lo < -0.2 for lo in peaks["min"])
    assert len(client.get(f"/v1/items/{item_ids['hum.ogg']}/peaks").json()["max"]) == 200
    assert_problem(client.get(f"/v1/items/{item_ids['hum.ogg']}/peaks", params={"n": 1}), 422, "request.invalid")


@pytest.mark.parametrize("suffix", ["", "/audio", "/peaks", "/similar"])
def test_unknown_item_is_404(client, suffix):
    assert_problem(client.get(f"/v1/items/987654{suffix}"), 404, "item.not_found")


def test_item_whose_file_is_gone(open_client, home_copy, tmp_path):
    """An item whose file was removed from disk after ingest: 404 audio_unavailable, not 500."""
    import sqlite3

    gone = tmp_path / "gone.wav"
    with sqlite3.connect(home_copy / "clapsearch.db") as db:
        item = db.execute("SELECT id FROM files WHERE status = 'indexed' LIMIT 1").fetchone()[0]
        db.execute("UPDATE files SET path = ? WHERE id = ?", (str(gone), item))
    client = open_client(home=home_copy)
    assert client.get(f"/v1/items/{item}").json()["path"] == str(gone)
    assert_problem(client.get(f"/v1/items/{item}/audio"), 404, "item.audio_unavailable")
    assert_problem(client.get(f"/v1/items/{item}/peaks"), 404, "item.audio_unavailable")


# ----------------------------------------------------------------------------- collections


def _check_default(info):
    assert info["name"] == "default" and info["model"] == "clapsearch-sfx-v1" and info["served"] is True
    assert info["dim"] == 512
    assert info["files"] == len(TRACKS) and info["failed"] == 1
    assert info["segments"] is True
    assert info["hours"] == pytest.approx(sum(t.seconds for t in TRACKS) / 3600, abs=0.002)
    assert info["index"]["files"]["n_vectors"] == len(TRACKS) and info["index"]["files"]["up_to_date"] is True
    assert info["index"]["segments"]["n_vectors"] == 4
    assert info["index"]["files"]["version"] >= 1


def test_collections(client):
    listed = client.get("/v1/collections")
    assert listed.status_code == 200
    assert {k: v for k, v in listed.json().items() if k != "items"} == {"total": 1, "limit": 100, "offset": 0}
    collections = listed.json()["items"]
    assert [c["name"] for c in collections] == ["default"]
    _check_default(collections[0])
    one = client.get("/v1/collections/default")
    assert one.status_code == 200
    _check_default(one.json())
    assert one.json() == collections[0]


def test_unknown_collection_is_404(client):
    body = assert_problem(client.get("/v1/collections/no-such-thing"), 404, "store.collection_not_found")
    assert body["instance"] == "/v1/collections/no-such-thing"


# ----------------------------------------------------------------------------- health, metrics, docs


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_metrics_count_the_stages_of_a_search(client):
    name = "clapsearch_stage_seconds_count"
    before = metric_samples(client.get("/metrics").text, name)
    assert client.get("/v1/search", params={"q": "a metric of a distant thunder", "limit": 3}).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = metric_samples(response.text, name)
    for stage in ("embed_text", "search", "database"):
        key = (("stage", stage),)
        assert after[key] > before.get(key, 0.0), stage
    requests = metric_samples(response.text, "clapsearch_request_seconds_count")
    assert any(dict(k).get("route") == "/v1/search" and dict(k).get("status") == "200" for k in requests)
    # routes are labelled by template, never by raw ids
    client.get("/v1/items/987654")
    routes = {
        dict(k).get("route") for k in metric_samples(client.get("/metrics").text, "clapsearch_request_seconds_count")
    }
    assert "/v1/items/{item_id}" in routes and not any("987654" in (r or "") for r in routes)


def test_openapi_lists_the_routes(client):
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path, method in [
        ("/v1/search", "get"),
        ("/search", "post"),
        ("/v1/search/audio", "post"),
        ("/v1/search/texts", "post"),
        ("/v1/classify", "post"),
        ("/classify", "post"),
        ("/v1/items/{item_id}", "get"),
        ("/v1/items/{item_id}/audio", "get"),
        ("/v1/items/{item_id}/peaks", "get"),
        ("/v1/items/{item_id}/similar", "get"),
        ("/v1/collections", "get"),
        ("/v1/collections/{name}", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ]:
        assert method in paths.get(path, {}), (path, method)


def test_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<html" in page.text.lower()
