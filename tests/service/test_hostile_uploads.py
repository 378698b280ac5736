"""Every hostile audio kind of the catalogue (``tests/reliability/hostile_audio.py``) uploaded to
every route that takes a file: the answer is the kind's expected one (a 4xx problem+json with
its code, or 200 for valid audio in disguise), never a 5xx, and within a bound that only a hang
would pass. Hostile part names and content types too."""

from __future__ import annotations

import time

import pytest

from tests.reliability import hostile_audio as hostile
from tests.service.conftest import assert_problem

HANG_S = 60.0  # no upload of a few KB may take this long; decoding one takes milliseconds
# (route, form fields besides the file): every route that takes an uploaded clip
ROUTES = [
    ("/v1/search/audio", {}),
    ("/v1/classify", {"candidate_labels": ["rain", "dog barking"]}),
    ("/classify", {"candidate_labels": ["rain"]}),
    ("/v1/search/texts", {"texts": ["rain"]}),
]
UPLOADABLE = [kind for kind in hostile.catalogue() if kind.upload is not None]


def answer_of(response) -> str:
    if response.status_code == 200:
        return "200"
    body = assert_problem(response, response.status_code)
    return f"{response.status_code} {body['code']}"


def post(client, route: str, fields: dict, name: str, data: bytes, content_type: str = "application/octet-stream"):
    started = time.monotonic()
    response = client.post(route, data=fields, files={"file": (name, data, content_type)})
    took = time.monotonic() - started
    assert took < HANG_S, (route, name, took)
    assert response.status_code < 500, (route, name, response.status_code, response.text[:300])
    return response


def test_every_upload_kind_is_listed():
    assert len(UPLOADABLE) >= 40


@pytest.mark.parametrize("kind", UPLOADABLE, ids=lambda k: k.name)
def test_each_hostile_upload_gets_its_answer_on_every_route(client, tmp_path, kind):
    name, data = hostile.upload_bytes(kind, tmp_path)
    for route, fields in ROUTES:
        response = post(client, route, fields, name, data)
        answer = answer_of(response)
        assert answer in kind.upload, (route, kind.what, answer, response.text[:300])
        if answer != "200":
            assert str(tmp_path) not in response.text and "/tmp" not in response.text  # no server paths


@pytest.mark.parametrize(
    "name", ["no_extension", "../../../etc/passwd.wav", "nul\x00byte.wav", "snow\u2603.WAV", ".wav", "a.exe"]
)
def test_hostile_part_names_do_not_matter(client, tmp_path, name):
    _, cut = hostile.upload_bytes(hostile.KINDS[0], tmp_path)
    good = hostile.encoded("WAV", "PCM_16")
    for route, fields in ROUTES:
        assert answer_of(post(client, route, fields, name, good)) == "200", (route, name)
        assert answer_of(post(client, route, fields, name, cut)) == "422 audio.decode", (route, name)


@pytest.mark.parametrize(
    ("name", "answer"),
    [
        ("", "422 request.invalid"),  # what a browser sends for "no file chosen": not a file part
        ("x" * 5000 + ".wav", "400 request.invalid"),  # past the multipart parser's header limit
    ],
)
def test_part_names_that_are_no_names_get_a_problem(client, name, answer):
    good = hostile.encoded("WAV", "PCM_16")
    for route, fields in ROUTES:
        assert answer_of(post(client, route, fields, name, good)) == answer, route


@pytest.mark.parametrize("content_type", ["text/plain", "image/png", "application/json", "multipart/mixed"])
def test_parts_that_say_they_are_not_audio_are_refused(client, content_type):
    good = hostile.encoded("WAV", "PCM_16")
    for route, fields in ROUTES:
        response = post(client, route, fields, "a.wav", good, content_type)
        assert_problem(response, 415, "upload.content_type")
