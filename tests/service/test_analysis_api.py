"""Tempo and key over HTTP once `indexer analyze` has run while the service was up: a page
cached before the analysis is not served after it (the result cache keys on the analysis)."""

from __future__ import annotations

import pytest

from indexer import cli
from tests.music_library import musical_library
from tests.service.conftest import MODEL


@pytest.mark.needs_redis
def test_an_analysis_run_shows_at_once_despite_the_result_cache(open_client, home_copy, tmp_path, redis_url):
    pytest.importorskip("librosa")
    musical_library(tmp_path / "music")
    home = ["--home", str(home_copy), "--model", str(MODEL)]
    assert cli.main(["ingest", str(tmp_path / "music"), "--workers", "1", "-q", *home]) == 0
    client = open_client(home_copy, redis_url=redis_url)  # the result cache on

    def names(**params) -> list[str]:
        response = client.get("/v1/search", params={"q": "music", "limit": 30, **params})
        assert response.status_code == 200, response.text[:300]
        return sorted(hit["name"] for hit in response.json()["items"])

    assert names(key="A minor") == []  # nothing analysed yet: no file has a key
    cached = client.get("/v1/search", params={"q": "music", "limit": 30, "key": "A minor"}).json()
    assert cached["cached"] is True and cached["items"] == []
    hits = client.get("/v1/search", params={"q": "music", "limit": 30}).json()["items"]
    assert all(hit["analysis"] is None for hit in hits)
    assert cli.main(["analyze", *home]) == 0
    assert names(key="A minor") == ["a_minor.wav"]
    assert names(bpm_min=118, bpm_max=122) == ["click_120.wav"]
    hits = client.get("/v1/search", params={"q": "music", "limit": 30}).json()["items"]
    assert {hit["name"]: hit["analysis"]["key"] for hit in hits}["c_major.wav"] == "C major"
    # POST takes the same filters in its body
    body = client.post("/v1/search", json={"q": "music", "key": "Am", "limit": 30}).json()
    assert [hit["name"] for hit in body["items"]] == ["a_minor.wav"]
