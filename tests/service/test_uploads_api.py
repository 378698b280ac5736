"""Bad uploads get a 4xx problem (application/problem+json with type/title/status/code), never a
5xx: undecodable bytes, non-audio parts, truncated and empty files, unsupported formats, clips
over max_upload_seconds, bodies over max_upload_bytes (declared or streamed chunked)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import tone, wav_bytes
from tests.indexer.library import bad_files
from tests.service.conftest import assert_problem, service_settings, settle

# every route that takes an uploaded clip, with what else it needs
ENDPOINTS = {
    "search/audio": ("/v1/search/audio", {}),
    "search/texts": ("/v1/search/texts", {}),
    "classify": ("/v1/classify", {"candidate_labels": ["rain", "dog"]}),
}
MAX_SECONDS, MAX_BYTES = 2.0, 300_000


@pytest.fixture(scope="module")
def limited(ingested_home):
    """An app with low upload limits."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    app = create_app(service_settings(ingested_home, max_upload_seconds=MAX_SECONDS, max_upload_bytes=MAX_BYTES))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
        settle(c)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return bad_files(tmp_path_factory.mktemp("bad"))


def post(client, endpoint: str, file=None, data=None, **kw):
    path, extra = ENDPOINTS[endpoint]
    files = {"file": file} if file is not None else None
    return client.post(path, files=files, data={**extra, **(data or {})} or None, **kw)


def assert_client_error(response, status: int, code: str) -> dict:
    body = assert_problem(response, status, code)
    # audio errors say why, without naming the server's temporary file
    assert "clapsearch-upload-" not in response.text and "/tmp" not in body.get("detail", "")
    return body


# ----------------------------------------------------------------------------- what is in the file


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_non_audio_bytes_labelled_audio_are_decode_errors(client, endpoint):
    noise = np.random.default_rng(3).bytes(5000)
    assert_client_error(post(client, endpoint, ("clip.wav", noise, "audio/wav")), 422, "audio.decode")


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("ctype", ["text/plain", "image/png", "application/json"])
def test_non_audio_parts_are_415(client, endpoint, ctype):
    assert_client_error(post(client, endpoint, ("notes.txt", b"hello " * 100, ctype)), 415, "upload.content_type")


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_the_indexers_bad_files(client, bad, endpoint):
    for name, code in (("garbage", "audio.decode"), ("text", "audio.decode"), ("empty", "audio.empty")):
        path = bad[name]
        assert_client_error(post(client, endpoint, (path.name, path.read_bytes(), "audio/wav")), 422, code)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_truncated_flac_is_a_4xx_problem(client, bad, endpoint):
    path = bad["truncated"]
    response = post(client, endpoint, (path.name, path.read_bytes(), "audio/flac"))
    assert 400 <= response.status_code < 500, response.text
    body = assert_problem(response, response.status_code)
    assert body["code"].startswith("audio"), body


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_zero_byte_file_is_empty_audio(client, endpoint):
    assert_client_error(post(client, endpoint, ("nothing.wav", b"", "audio/wav")), 422, "audio.empty")


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("head", [b"\x00\x00\x00\x20ftypM4A " + bytes(600), b"not really anything" * 30])
def test_damaged_m4a_is_a_decode_error(client, endpoint, head):
    assert_client_error(post(client, endpoint, ("song.m4a", head, "audio/mp4")), 422, "audio.decode")


def encoded(name: str, seconds: float, tmp_path, **kw) -> bytes:
    from tests.formats import BY_NAME, encode

    fmt = BY_NAME[name]
    return encode(tmp_path / f"clip{fmt.suffix}", tone(seconds, 44_100, channels=2), 44_100, fmt, **kw).read_bytes()


@pytest.mark.parametrize(
    "name, filename, ctype",
    [
        ("m4a-aac", "clip.m4a", "audio/mp4"),
        ("mp4-aac-video", "clip.mp4", "video/mp4"),
        ("wma-wmav2", "x.wma", "audio/x-ms-wma"),
    ],
)
def test_m4a_video_and_wma_uploads_are_searched_by_their_audio(client, tmp_path, name, filename, ctype):
    pytest.importorskip("av")
    response = post(client, "search/audio", (filename, encoded(name, 1.0, tmp_path), ctype))
    assert response.status_code == 200, response.text


def test_a_video_upload_without_sound_is_empty_audio(client, tmp_path):
    pytest.importorskip("av")
    data = encoded("mp4-aac-video", 0.1, tmp_path, audio=False)
    body = assert_client_error(post(client, "search/audio", ("film.mp4", data, "video/mp4")), 422, "audio.empty")
    assert "no audio track" in body["detail"]


def test_long_m4a_upload_is_refused_from_its_header(limited, tmp_path):
    pytest.importorskip("av")
    data = encoded("m4a-aac", MAX_SECONDS + 1.0, tmp_path)
    assert_client_error(post(limited, "search/audio", ("long.m4a", data, "audio/mp4")), 413, "audio.too_long")


def test_octet_stream_and_browser_types_are_accepted(client):
    data = wav_bytes(1.0)
    for ctype in ("application/octet-stream", "audio/x-wav", "audio/wave"):
        assert post(client, "search/audio", ("clip.wav", data, ctype)).status_code == 200, ctype


# ----------------------------------------------------------------------------- audio source


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_neither_file_nor_id_or_both_are_422(client, item_ids, endpoint):
    path, extra = ENDPOINTS[endpoint]
    assert_problem(post(client, endpoint), 422, "request.audio_source")
    # a browser's empty file part (no file chosen) is no file either
    assert_problem(post(client, endpoint, ("", b"", "application/octet-stream")), 422, "request.audio_source")
    item = item_ids["tone_440.wav"]
    both = (
        client.post(
            path, params={"id": item}, files={"file": ("clip.wav", wav_bytes(1.0), "audio/wav")}, data=extra or None
        )
        if endpoint != "classify"
        else post(client, endpoint, ("clip.wav", wav_bytes(1.0), "audio/wav"), data={"id": item})
    )
    assert_problem(both, 422, "request.audio_source")


# ----------------------------------------------------------------------------- limits


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_clip_longer_than_max_upload_seconds_is_413(limited, endpoint):
    data = wav_bytes(5.0)
    assert len(data) < MAX_BYTES
    body = assert_client_error(post(limited, endpoint, ("long.wav", data, "audio/wav")), 413, "audio.too_long")
    assert "2" in body["detail"]
    assert post(limited, endpoint, ("short.wav", wav_bytes(1.5), "audio/wav")).status_code == 200


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_body_over_max_upload_bytes_with_content_length_is_413(limited, endpoint):
    response = post(limited, endpoint, ("big.wav", bytes(MAX_BYTES + 1000), "audio/wav"))
    body = assert_problem(response, 413, "upload.too_large")
    assert str(MAX_BYTES) in body["detail"]


def _chunked_multipart(payload_chunks, filename="big.wav", ctype="audio/wav"):
    boundary = "clapsearchtestboundary"

    def body():
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n"
        ).encode()
        yield from payload_chunks
        yield f"\r\n--{boundary}--\r\n".encode()

    return body(), {"content-type": f"multipart/form-data; boundary={boundary}"}


def _oversized_chunks():
    for _ in range(40):
        yield bytes(10_000)  # 400 kB in all, no Content-Length


@pytest.mark.parametrize("endpoint", ["search/audio", "search/texts"])
def test_chunked_body_within_the_limit_works(limited, endpoint):
    data = wav_bytes(1.0)
    content, headers = _chunked_multipart(data[i : i + 4096] for i in range(0, len(data), 4096))
    response = limited.post(ENDPOINTS[endpoint][0], content=content, headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_chunked_body_over_max_upload_bytes_is_refused(limited, endpoint):
    content, headers = _chunked_multipart(_oversized_chunks())
    assert "content-length" not in {k.lower() for k in headers}
    response = limited.post(ENDPOINTS[endpoint][0], content=content, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert_problem(response, response.status_code)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_chunked_body_over_max_upload_bytes_is_413(limited, endpoint):
    content, headers = _chunked_multipart(_oversized_chunks())
    response = limited.post(ENDPOINTS[endpoint][0], content=content, headers=headers)
    assert_problem(response, 413, "upload.too_large")
