"""One API style (README, "API"): every POST takes its fields as JSON or form fields (and, for old
clients, query parameters) with the same answer; lists are arrays or repeated fields, never split
on commas; list resources share one envelope; ``tags`` is an object; every error is a problem.
Hostile bodies (wrong types, wrong content types, huge lists, broken JSON) are 4xx problems."""

from __future__ import annotations

import pytest

from tests.service.conftest import assert_problem, valid_search

COMMA_LABEL = "Crowing, cock-a-doodle-doo"  # one of AudioSet's own labels


def _upload(library, name="tone_440.wav"):
    return {"file": (name, library.path(name).read_bytes(), "audio/wav")}


# ----------------------------------------------------------------------------- JSON = form = query


@pytest.mark.parametrize("path", ["/search", "/v1/search"])
def test_text_search_takes_json_form_and_query_alike(client, path):
    fields = {"q": "a high tone", "limit": 3, "format": ["WAV", "OGG"]}
    as_json = client.post(path, json=fields)
    as_form = client.post(path, data=fields)
    as_query = client.post(path, params=fields)
    as_get = client.get("/v1/search", params=fields)
    bodies = [valid_search(r) for r in (as_json, as_form, as_query, as_get)]
    assert len({tuple((h["id"], h["score"]) for h in b["items"]) for b in bodies}) == 1
    assert bodies[0]["limit"] == 3 and bodies[0]["query"] == "a high tone"
    assert {h["format"] for h in bodies[0]["items"]} <= {"WAV", "OGG"}


def test_text_search_without_q_names_the_field(client):
    body = assert_problem(client.post("/search", json={"limit": 3}), 422, "request.invalid")
    assert body["errors"][0]["loc"] == ["body", "q"]


def test_classify_takes_json_form_and_query_alike(client, item_ids):
    fields = {"id": item_ids["roof.wav"], "candidate_labels": [COMMA_LABEL, "rain", "a dog"], "multi_label": True}
    answers = [
        client.post("/v1/classify", json=fields),
        client.post("/classify", data=fields),
        client.post("/v1/classify", params=fields),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
    labels = [sorted(e["label"] for e in r.json()["labels"]) for r in answers]
    assert labels[0] == labels[1] == labels[2] == sorted([COMMA_LABEL, "rain", "a dog"])
    assert all(r.json()["multi_label"] is True for r in answers)
    assert answers[0].json()["labels"] == answers[1].json()["labels"]


def test_a_label_with_a_comma_stays_one_label(client, item_ids, library):
    one = client.post("/v1/classify", data={"id": item_ids["roof.wav"], "candidate_labels": COMMA_LABEL})
    assert [e["label"] for e in one.json()["labels"]] == [COMMA_LABEL]
    upload = client.post("/v1/classify", files=_upload(library), data={"candidate_labels": [COMMA_LABEL, "x"]})
    assert sorted(e["label"] for e in upload.json()["labels"]) == sorted([COMMA_LABEL, "x"])
    single = client.post("/v1/classify", json={"id": item_ids["roof.wav"], "candidate_labels": COMMA_LABEL})
    assert [e["label"] for e in single.json()["labels"]] == [COMMA_LABEL]  # a string is a list of one


def test_texts_take_form_fields_json_and_query(client, item_ids, library):
    item = item_ids["tone_440.wav"]
    mine = ["a pure sine tone", COMMA_LABEL]
    fields = {"id": item, "texts": mine, "vocabulary": "false"}
    answers = [
        client.post("/v1/search/texts", data=fields),
        client.post("/v1/search/texts", json={**fields, "vocabulary": False}),
        client.post("/v1/search/texts", params=fields),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        assert sorted(r["text"] for r in response.json()["items"]) == sorted(mine)
    upload = client.post("/v1/search/texts", files=_upload(library), data={"texts": mine, "vocabulary": "false"})
    assert sorted(r["text"] for r in upload.json()["items"]) == sorted(mine)


def test_audio_search_takes_json_and_form(client, item_ids, library):
    item = item_ids["tone_440.wav"]
    as_json = valid_search(client.post("/v1/search/audio", json={"id": item, "limit": 4}))
    as_form = valid_search(client.post("/v1/search/audio", data={"id": item, "limit": 4}))
    as_query = valid_search(client.post("/v1/search/audio", params={"id": item, "limit": 4}))
    assert as_json["items"] == as_form["items"] == as_query["items"]
    assert len(as_json["items"]) == 4 and item not in {h["id"] for h in as_json["items"]}
    with_self = valid_search(client.post("/v1/search/audio", json={"id": item, "exclude_self": False}))
    assert with_self["items"][0]["id"] == item
    upload = valid_search(client.post("/v1/search/audio", files=_upload(library), data={"limit": 2}))
    assert len(upload["items"]) == 2


def test_ingest_takes_json_and_form(open_client, tmp_path):
    api = open_client(allowed_ingest_roots=[str(tmp_path)])
    outside = {"path": "/etc", "collection": "c1"}
    for response in (api.post("/v1/jobs/ingest", json=outside), api.post("/v1/jobs/ingest", data=outside)):
        assert_problem(response, 403, "ingest.path_not_allowed")
    assert_problem(api.post("/v1/jobs/ingest", json={"collection": "c1"}), 422, "request.invalid")


# ----------------------------------------------------------------------------- shapes


def test_list_resources_share_one_envelope(client):
    for path in ("/v1/collections", "/v1/jobs"):
        body = client.get(path).json()
        assert set(body) == {"items", "total", "limit", "offset"}, (path, body)
        assert isinstance(body["items"], list) and body["total"] >= len(body["items"])
    paged = client.get("/v1/collections", params={"offset": 1}).json()
    assert paged["items"] == [] and paged["total"] == 1 and paged["offset"] == 1


def test_tags_are_always_an_object(client, item_ids):
    untagged = item_ids["tone_440.wav"]
    assert client.get(f"/v1/items/{untagged}").json()["tags"] == {}
    hits = valid_search(client.get("/v1/search", params={"q": "a tone", "limit": 50}))["items"]
    assert all(isinstance(h["tags"], dict) for h in hits)
    assert {} in [h["tags"] for h in hits] and any(h["tags"] for h in hits)


# ----------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("path", ["/search", "/v1/classify", "/v1/search/texts", "/v1/search/audio", "/v1/jobs/ingest"])
def test_bodies_that_are_not_fields_are_problems(client, path):
    assert_problem(
        client.post(path, content=b"q=dog", headers={"Content-Type": "text/plain"}), 415, "upload.content_type"
    )
    assert_problem(
        client.post(path, content=b"\x00\x01", headers={"Content-Type": "application/octet-stream"}),
        415,
        "upload.content_type",
    )
    assert_problem(
        client.post(path, content=b'{"q": ', headers={"Content-Type": "application/json"}), 422, "request.invalid"
    )
    assert_problem(
        client.post(path, content=b"\xff\xfe", headers={"Content-Type": "application/json"}), 422, "request.invalid"
    )
    assert_problem(client.post(path, json=["q", "dog"]), 422, "request.invalid")
    assert_problem(client.post(path, json="dog"), 422, "request.invalid")
    assert_problem(client.post(path, json={"nonsense": 1, "qq": "dog"}), 422, "request.invalid")


@pytest.mark.parametrize(
    "path, fields",
    [
        ("/search", {"q": ["a", "b"]}),
        ("/search", {"q": "a", "limit": "many"}),
        ("/search", {"q": "a", "limit": -1}),
        ("/search", {"q": "a", "format": [{"x": 1}]}),
        ("/search", {"q": "a", "tag": ["t"] * 5000}),
        ("/search", {"q": {"text": "a"}}),
        ("/v1/classify", {"id": "seven", "candidate_labels": ["a"]}),
        ("/v1/classify", {"id": 1, "candidate_labels": [1, 2]}),
        ("/v1/classify", {"id": 1, "candidate_labels": {"a": 1}}),
        ("/v1/classify", {"id": 1, "candidate_labels": ["a"], "multi_label": "perhaps"}),
        ("/v1/search/texts", {"id": 1, "texts": "x", "limit": 0}),
        ("/v1/search/texts", {"id": 1, "texts": [None]}),
        ("/v1/jobs/ingest", {"path": 5}),
        ("/v1/jobs/ingest", {"path": "/tmp", "collection": "../x"}),
    ],
)
def test_wrong_types_are_422(client, path, fields):
    assert_problem(client.post(path, json=fields), 422, "request.invalid")


def test_huge_lists_are_4xx_problems(client, item_ids):
    item = item_ids["tone_440.wav"]
    many = [f"label {i}" for i in range(20_000)]
    assert_problem(
        client.post("/v1/classify", json={"id": item, "candidate_labels": many}), 422, "request.too_many_labels"
    )
    assert_problem(client.post("/v1/search/texts", json={"id": item, "texts": many}), 422, "request.too_many_labels")
    form = client.post("/v1/classify", data={"id": item, "candidate_labels": many[:5000]})
    assert form.status_code in (400, 413, 422) and form.headers["content-type"].startswith("application/problem+json")


def test_deep_json_and_long_query_lists_are_problems(client):
    deep = b"[" * 200_000 + b"]" * 200_000
    assert_problem(
        client.post("/search", content=deep, headers={"Content-Type": "application/json"}), 422, "request.invalid"
    )
    nested = b'{"q": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    assert_problem(
        client.post("/search", content=nested, headers={"Content-Type": "application/json"}), 422, "request.invalid"
    )
    assert_problem(client.get("/v1/search", params=[("q", "a")] + [("tag", "t")] * 500), 422, "request.invalid")


def test_file_must_be_a_file_part(client, item_ids):
    assert_problem(client.post("/v1/search/audio", data={"file": "not a file"}), 422, "request.invalid")
    assert_problem(client.post("/v1/search/audio", json={"file": "clip.wav"}), 422, "request.invalid")


@pytest.mark.parametrize(
    "method, path",
    [
        ("DELETE", "/v1/search"),
        ("PUT", "/v1/classify"),
        ("GET", "/v1/classify"),
        ("PATCH", "/v1/collections"),
        ("POST", "/v1/jobs"),
    ],
)
def test_wrong_method_is_a_405_problem(client, method, path):
    response = client.request(method, path)
    body = assert_problem(response, 405, "request.method")
    assert "." in body["code"]
    assert method not in response.headers["Allow"] and response.headers["Allow"]


@pytest.mark.parametrize(
    "path, allowed",
    [("/v1/items/1", {"GET", "HEAD"}), ("/v1/items/1/peaks", {"GET", "HEAD"}), ("/v1/search", {"GET", "POST"})],
)
def test_a_405_names_every_method_the_path_serves(client, path, allowed):
    # Schemathesis (issue 16): a path served by a GET route and a separate HEAD route said
    # "Allow: HEAD" only, as if GET were refused too
    response = client.request("OPTIONS", path)
    assert_problem(response, 405, "request.method")
    assert allowed <= set(response.headers["Allow"].split(", ")), response.headers["Allow"]
