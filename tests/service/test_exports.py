"""Exports: hits and collections as M3U8 playlists and CSV sheets, from the CLI and the API,
holding the same rows as the JSON answers."""

from __future__ import annotations

import csv
import io
import json

from indexer import cli
from indexer.exports import CSV_COLUMNS, render
from tests.service.conftest import MODEL, assert_problem

QUERY = "a steady hum"


def _cli(capsys, home, *args: str) -> str:
    capsys.readouterr()
    assert cli.main([*args, "--home", str(home), "--model", str(MODEL)]) == 0
    return capsys.readouterr().out


def _entries(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


def test_playlist_lines_carry_titles_durations_moments_and_no_stray_newlines():
    records = [
        {"id": 1, "name": "rain\nroof.wav", "path": "/lib/rain\nroof.wav", "score": 0.8123, "duration_s": 3.4},
        {
            "id": 2,
            "name": "drone.flac",
            "path": "/lib/drone.flac",
            "score": 0.7,
            "duration_s": 25.0,
            "start_s": 5.0,
            "end_s": 15.0,
        },
    ]
    text = render(records, "m3u8", locate=lambda r: r["path"])
    assert text.splitlines() == [
        "#EXTM3U",
        "#EXTINF:3,rain roof.wav (score 0.812)",
        "/lib/rain roof.wav",
        "#EXTINF:25,drone.flac (score 0.700)",
        "#EXTVLCOPT:start-time=5.00",
        "#EXTVLCOPT:stop-time=15.00",
        "/lib/drone.flac",
    ]
    rows = list(csv.DictReader(io.StringIO(render(records, "csv", locate=str))))
    assert [r["rank"] for r in rows] == ["1", "2"] and rows[0]["name"] == "rain\nroof.wav"
    assert rows[1]["start_s"] == "5.0" and json.loads(rows[1]["tags"]) == {}


def test_cli_search_and_export_write_what_json_says(ingested_home, library, capsys, tmp_path):
    hits = json.loads(_cli(capsys, ingested_home, "search", QUERY, "--json"))["items"]
    playlist = _cli(capsys, ingested_home, "search", QUERY, "--output", "m3u8")
    assert playlist.startswith("#EXTM3U\n") and _entries(playlist) == [h["path"] for h in hits]
    sheet = list(csv.DictReader(io.StringIO(_cli(capsys, ingested_home, "search", QUERY, "--output", "csv"))))
    assert [int(r["id"]) for r in sheet] == [h["id"] for h in hits] and list(sheet[0]) == list(CSV_COLUMNS)
    out = tmp_path / "library.csv"
    _cli(capsys, ingested_home, "export", "--out", str(out))
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert sorted(r["name"] for r in rows) == sorted(library.names())  # indexed files only
    out = tmp_path / "library.m3u8"
    _cli(capsys, ingested_home, "export", "--out", str(out))
    assert sorted(_entries(out.read_text())) == sorted(r["path"] for r in rows)


def test_api_search_downloads_match_the_json_page_and_their_urls_play(client):
    page = client.get("/v1/search", params={"q": QUERY, "limit": 5}).json()["items"]
    response = client.get("/v1/search", params={"q": QUERY, "limit": 5, "output": "m3u8"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("audio/x-mpegurl")
    assert "attachment" in response.headers["content-disposition"]
    urls = _entries(response.text)
    assert urls == [f"http://testserver/v1/items/{h['id']}/audio" for h in page]
    assert client.get(urls[0]).status_code == 200
    sheet = client.get("/v1/search", params={"q": QUERY, "limit": 5, "output": "csv"})
    assert sheet.headers["content-type"].startswith("text/csv")
    assert [int(r["id"]) for r in csv.DictReader(io.StringIO(sheet.text))] == [h["id"] for h in page]


def test_api_collection_export_and_its_refusals(client, library):
    response = client.get("/v1/collections/default/export", params={"format": "csv"})
    assert response.status_code == 200
    assert sorted(r["name"] for r in csv.DictReader(io.StringIO(response.text))) == sorted(library.names())
    playlist = client.get("/v1/collections/default/export")
    assert len(_entries(playlist.text)) == len(library.names())
    assert_problem(client.get("/v1/collections/nope/export"), 404, "store.collection_not_found")
    assert_problem(client.get("/v1/collections/default/export", params={"format": "xls"}), 422)
    assert_problem(client.get("/v1/search", params={"q": QUERY, "output": "pdf"}), 422)
