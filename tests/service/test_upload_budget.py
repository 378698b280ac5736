"""Issue 16, defect 6: an upload's CPU is bounded before decoding, and uploads shed load.

* decoded samples (frames x channels) are bounded from the header: a short, silent, many-channel,
  high-rate FLAC is a few KB and inside max_upload_seconds, yet costs like minutes of stereo;
* uploads wait for a decode thread in a bounded queue, for a bounded time, and a decode has a
  deadline: past any of these the answer is 503 ``service.busy`` with Retry-After, never an open-ended wait.
"""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from indexer.audio.decode import DecodeLimits, probe
from indexer.errors import AudioTooLongError
from tests.helpers import wav_bytes
from tests.service.conftest import assert_problem


def flac_bytes(seconds: float, sr: int, channels: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros((int(seconds * sr), channels), np.float32), sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def test_probe_refuses_a_file_over_the_sample_budget(tmp_path):
    path = tmp_path / "wide.flac"
    path.write_bytes(flac_bytes(1.0, 96_000, 8))  # 768 000 samples
    assert probe(path, limits=DecodeLimits(max_samples=800_000)).channels == 8
    with pytest.raises(AudioTooLongError, match="768,000 samples"):
        probe(path, limits=DecodeLimits(max_samples=700_000))


def test_a_cheap_file_that_is_costly_to_decode_is_refused_before_decoding(open_client):
    # 2 s x 192 000 = 384 000 samples may be decoded; this clip is 1.5 s (inside the duration
    # limit) but 8 channels at 96 kHz: 1 152 000 samples, from a FLAC of a few KB
    client = open_client(max_upload_seconds=2.0)
    body = flac_bytes(1.5, 96_000, 8)
    assert len(body) < 100_000
    response = client.post("/v1/search/audio", files={"file": ("wide.flac", body, "audio/flac")})
    problem = assert_problem(response, 413, "audio.too_long")
    assert "samples" in problem["detail"] and "/tmp" not in problem["detail"]
    # the same clip in stereo is inside the budget and searched
    ok = client.post("/v1/search/audio", files={"file": ("stereo.flac", flac_bytes(1.5, 48_000, 2), "audio/flac")})
    assert ok.status_code == 200, ok.text[:300]


def _slow_decoder(client, seconds: float):
    encoder = client.app.state.runtime.encoder
    real = encoder.views_from_file

    def slow(path, **kw):
        time.sleep(seconds)
        return real(path, **kw)

    return encoder, slow


def _post_at_once(client, n: int) -> list:
    answers: list = [None] * n

    def one(i):
        answers[i] = client.post("/v1/search/audio", files={"file": ("a.wav", wav_bytes(), "audio/wav")})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(a is not None for a in answers), "an upload hung"
    return answers


def test_uploads_beyond_the_queue_get_503_busy_with_retry_after(open_client, monkeypatch):
    client = open_client(decode_threads=1, upload_queue=1, upload_wait_s=20)
    encoder, slow = _slow_decoder(client, 1.0)
    monkeypatch.setattr(encoder, "views_from_file", slow)
    started = time.monotonic()
    answers = _post_at_once(client, 5)
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) >= 1 and codes.count(503) >= 2, codes
    for a in answers:
        if a.status_code == 503:
            assert_problem(a, 503, "service.busy")
            assert int(a.headers["Retry-After"]) >= 1
    assert time.monotonic() - started < 15


def test_a_wait_for_a_decode_thread_has_a_deadline(open_client, monkeypatch):
    client = open_client(decode_threads=1, upload_queue=4, upload_wait_s=0.3)
    encoder, slow = _slow_decoder(client, 1.5)
    monkeypatch.setattr(encoder, "views_from_file", slow)
    codes = sorted(a.status_code for a in _post_at_once(client, 3))
    assert codes.count(503) >= 1 and codes.count(200) >= 1, codes


def test_a_decode_past_its_deadline_answers_busy(open_client, monkeypatch):
    client = open_client(upload_decode_timeout_s=0.3)
    encoder, slow = _slow_decoder(client, 1.5)
    monkeypatch.setattr(encoder, "views_from_file", slow)
    started = time.monotonic()
    response = client.post("/v1/search/audio", files={"file": ("a.wav", wav_bytes(), "audio/wav")})
    assert_problem(response, 503, "service.busy")
    assert "Retry-After" in response.headers
    assert time.monotonic() - started < 1.4
    time.sleep(1.5)  # the abandoned decode returns and frees its slot
    monkeypatch.undo()
    again = client.post("/v1/search/audio", files={"file": ("a.wav", wav_bytes(), "audio/wav")})
    assert again.status_code == 200, again.text[:300]
