"""Issue 16, defect 12: the contract the API documents is the one it keeps.

Details name no server paths or library internals; timestamps carry their UTC offset; waveform
peaks are never null; the server stack's own 400/416 are problem+json; an emptied file is not
streamed as an empty 200; HEAD works wherever GET does on items.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from indexer.errors import public_text
from service.routes.items import compute_peaks
from service.schemas import Peaks
from tests.service.conftest import assert_problem, ingest, write_new_file


@pytest.fixture
def served(tmp_path, open_client):
    lib = tmp_path / "lib"
    write_new_file(lib, "a.wav")
    write_new_file(lib, "b.wav", freq=900.0)
    home = tmp_path / "home"
    assert ingest(home, [lib], segments=False).embedded == 2
    with sqlite3.connect(home / "clapsearch.db") as db:
        ids = {Path(p).name: int(i) for i, p in db.execute("SELECT id, path FROM files")}
    return open_client(home, allowed_ingest_roots=[lib]), lib, home, ids


def test_public_text_drops_paths_and_library_locations():
    faiss = (
        "/srv/home/indexes/default/files/v000002: cannot read index.faiss: Error in std::unique_ptr<faiss::Index> "
        "faiss::read_index_up(IOReader*, int) at /project/faiss/impl/index_read.cpp:3251: Index type 0x20 not recognized"
    )
    assert public_text(faiss) == "v000002: cannot read index.faiss: Index type 0x20 not recognized"
    opened = "Error in faiss::FileIOReader::FileIOReader(const char*) at /project/faiss/impl/io.cpp:69: Error: 'f' failed: could not open /data/x.faiss for reading"
    assert public_text(opened) == "could not open x.faiss for reading"
    assert public_text("s3://bucket/a.wav, 1/2 and /") == "s3://bucket/a.wav, 1/2 and /"


def test_an_unreadable_index_answers_without_server_paths(tmp_path, open_client):
    lib, home = tmp_path / "lib", tmp_path / "home"
    write_new_file(lib, "a.wav")
    assert ingest(home, [lib], segments=False).embedded == 1
    files = home / "indexes" / "default" / "files"
    live = files / (files / "CURRENT").read_text().strip()
    (live / "index.faiss").write_bytes(b"not a faiss index")
    client = open_client(home)
    response = client.get("/v1/search", params={"q": "a beep"})
    body = assert_problem(response, 503, "store.index")
    assert str(tmp_path) not in response.text and ".cpp" not in response.text, body
    assert "/project/" not in response.text and "Error in" not in body["detail"], body
    assert "index.faiss" in body["detail"]  # still says what is wrong


def test_updated_at_has_its_utc_offset(served):
    client, _, _, ids = served
    stamp = client.get(f"/v1/items/{ids['a.wav']}").json()["updated_at"]
    assert stamp.endswith("+00:00"), stamp
    assert datetime.fromisoformat(stamp).utcoffset().total_seconds() == 0


def test_peaks_are_never_null(tmp_path):
    samples = np.zeros((4000, 2), np.float32)
    samples[100:200] = np.nan
    samples[2050:2150, 0] = np.inf  # half a bucket: its min is finite, its max is not
    samples[3000:3100, 1] = -np.inf
    path = tmp_path / "odd.wav"
    sf.write(path, samples, 8000, subtype="FLOAT")
    peaks = compute_peaks(path, 40)
    assert all(np.isfinite(peaks["min"])) and all(np.isfinite(peaks["max"]))
    assert "null" not in Peaks(**peaks).model_dump_json()
    # a file shorter than the buckets leaves most of them empty: 0.0, not null
    sf.write(tmp_path / "short.wav", np.full(3, 0.5, np.float32), 8000, subtype="FLOAT")
    short = compute_peaks(tmp_path / "short.wav", 16)
    assert "null" not in Peaks(**short).model_dump_json() and short["max"].count(0.0) >= 13


def test_an_unsatisfiable_or_malformed_range_is_a_problem(served):
    client, lib, _, ids = served
    path = f"/v1/items/{ids['a.wav']}/audio"
    size = (lib / "a.wav").stat().st_size
    r = client.get(path, headers={"Range": f"bytes={size + 10}-{size + 20}"})
    assert_problem(r, 416, "request.range")
    assert r.headers["content-range"] == f"bytes */{size}"
    for bad in ("bytes=9-3", "items=0-1", "bytes"):
        assert_problem(client.get(path, headers={"Range": bad}), 400, "request.range_invalid")
    # still served afterwards: the refusals did not leak the descriptor or break the route
    assert client.get(path, headers={"Range": "bytes=0-9"}).status_code == 206


def test_an_emptied_file_is_not_streamed_as_an_empty_200(served):
    client, lib, _, ids = served
    (lib / "a.wav").write_bytes(b"")
    r = client.get(f"/v1/items/{ids['a.wav']}/audio")
    assert_problem(r, 404, "item.audio_unavailable")


def test_head_works_wherever_get_does_on_items(served):
    client, lib, _, ids = served
    item = ids["a.wav"]
    for route in ("", "/audio", "/peaks", "/similar"):
        got, head = client.get(f"/v1/items/{item}{route}"), client.head(f"/v1/items/{item}{route}")
        assert got.status_code == 200 and head.status_code == 200, (route, head.status_code)
        assert head.headers["content-type"] == got.headers["content-type"]
    head = client.head(f"/v1/items/{item}/audio")
    assert int(head.headers["content-length"]) == (lib / "a.wav").stat().st_size and head.content == b""
    assert client.head("/v1/items/999999/audio").status_code == 404


def test_peaks_of_formats_only_pyav_reads(tmp_path):
    pytest.importorskip("av")
    from tests.formats import BY_NAME, encode

    for name in ("m4a-alac", "webm-opus", "mp4-aac-video"):
        sr = 48_000 if name == "webm-opus" else 44_100
        x = np.zeros((sr, 2), np.float32)  # 1 s: silent first half, a loud tone in the second
        x[sr // 2 :] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(sr - sr // 2) / sr)[:, None]
        peaks = compute_peaks(encode(tmp_path / f"clip{BY_NAME[name].suffix}", x, sr, BY_NAME[name]), 10)
        assert max(peaks["max"][:4]) < 0.05 and min(peaks["max"][6:]) > 0.3, (name, peaks)
        assert peaks["duration_s"] == pytest.approx(1.0, abs=0.05)
