"""Zero-shot tagging (`/classify`, `/v1/classify`) with the Hugging Face pipeline's conventions:
candidate_labels (repeated or comma-separated), hypothesis_template, softmax over the
candidates with the model's temperature, raw cosines, multi_label scores in [0, 1]."""

from __future__ import annotations

import math

import pytest

from tests.service.conftest import assert_problem, metric_samples

LABELS = ["a pure sine tone", "rain", "a dog barking", "a car engine"]


def _upload(library, name="tone_440.wav"):
    return {"file": (name, library.path(name).read_bytes(), "audio/wav")}


def _classify(client, item: int, labels: list[str] = LABELS, **fields: str) -> dict:
    """``/v1/classify`` of an indexed item: the body of its 200 answer."""
    response = client.post("/v1/classify", data={"id": item, "candidate_labels": labels, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def _check_softmax(body):
    labels = body["labels"]
    scores = [entry["score"] for entry in labels]
    assert scores == sorted(scores, reverse=True)  # HF order: best first
    assert sum(scores) == pytest.approx(1.0, abs=1e-4)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert all(-1.0 <= entry["cosine"] <= 1.0 for entry in labels)
    # the scores are the softmax of the cosines at the model's temperature
    scale = body["logit_scale"]
    assert scale > 1.0
    z = [math.exp(scale * entry["cosine"]) for entry in labels]
    for entry, e in zip(labels, z):
        assert entry["score"] == pytest.approx(e / sum(z), abs=1e-4)


def test_upload_with_repeated_labels(client, library):
    response = client.post("/v1/classify", files=_upload(library), data={"candidate_labels": LABELS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == "tone_440.wav" and body["model"] == "clapsearch-sfx-v1"
    assert body["multi_label"] is False and body["hypothesis_template"] == "This is a sound of {}."
    assert sorted(entry["label"] for entry in body["labels"]) == sorted(LABELS)
    _check_softmax(body)


def test_repeated_labels_json_arrays_query_params_and_both_routes_agree(client, library, item_ids):
    item = item_ids["tone_440.wav"]
    repeated = _classify(client, item)
    as_json = client.post("/classify", json={"id": item, "candidate_labels": LABELS}).json()
    as_query = client.post("/classify", params={"id": item, "candidate_labels": LABELS}).json()
    assert repeated["labels"] == as_json["labels"] == as_query["labels"]
    assert repeated["query"] == f"item:{item}"
    _check_softmax(repeated)
    # an upload of the same file gives (nearly) the same cosines as its stored vector
    uploaded = {
        e["label"]: e["cosine"]
        for e in client.post("/classify", files=_upload(library), data={"candidate_labels": LABELS}).json()["labels"]
    }
    for entry in repeated["labels"]:
        assert entry["cosine"] == pytest.approx(uploaded[entry["label"]], abs=2e-3)


def test_repeated_values_may_contain_commas(client, item_ids):
    body = _classify(client, item_ids["roof.wav"], ["rain, falling on a roof", "a dog"])
    assert sorted(entry["label"] for entry in body["labels"]) == ["a dog", "rain, falling on a roof"]


def test_label_order_of_the_request_does_not_change_scores(client, item_ids):
    item = item_ids["rain.flac"]
    forward = _classify(client, item)["labels"]
    backward = _classify(client, item, LABELS[::-1])["labels"]
    assert forward == backward


def test_custom_hypothesis_template_changes_the_cosines(client, item_ids):
    item = item_ids["tone_880.wav"]
    default = _classify(client, item)
    custom = _classify(client, item, hypothesis_template="A recording of {} far away.")
    assert custom["hypothesis_template"] == "A recording of {} far away."
    before = {e["label"]: e["cosine"] for e in default["labels"]}
    after = {e["label"]: e["cosine"] for e in custom["labels"]}
    assert set(before) == set(after)
    assert all(before[label] != after[label] for label in before)
    _check_softmax(custom)
    # the explicit default template is the default
    explicit = _classify(client, item, hypothesis_template="This is a sound of {}.")
    assert explicit["labels"] == default["labels"]
    named = _classify(client, item, hypothesis_template="This is a sound of {label}.")
    assert named["labels"] == default["labels"]


def test_multi_label_scores_each_label_on_its_own(client, item_ids):
    item = item_ids["tone_1760.wav"]
    labels = LABELS + ["a beep", "a whistle", "silence"]
    body = _classify(client, item, labels, multi_label="true")
    assert body["multi_label"] is True
    entries = body["labels"]
    scores = [e["score"] for e in entries]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) != pytest.approx(1.0, abs=1e-3)  # no softmax competition
    # independent: a label's score does not depend on the other candidates
    alone = _classify(client, item, [entries[0]["label"], "rain"], multi_label="true")["labels"]
    assert {e["label"]: e["score"] for e in alone}[entries[0]["label"]] == entries[0]["score"]
    # monotonic in the cosine
    by_cosine = sorted(entries, key=lambda e: e["cosine"])
    assert [e["score"] for e in by_cosine] == sorted(scores)
    # multi_label off (explicitly) is the softmax again
    single = _classify(client, item, labels, multi_label="false")
    assert single["multi_label"] is False
    _check_softmax(single)


def test_classify_cosines_cached_or_not_are_stable(client, item_ids):
    item = item_ids["hum.ogg"]
    first = _classify(client, item)["labels"]
    second = _classify(client, item)["labels"]
    assert first == second


@pytest.mark.parametrize(
    "data, code",
    [
        ({"candidate_labels": ""}, "request.no_labels"),
        ({"candidate_labels": [" ", ""]}, "request.no_labels"),
        ({}, "request.no_labels"),
        ({"candidate_labels": ["a", "b"], "hypothesis_template": "no placeholder"}, "request.template"),
        ({"candidate_labels": "x" * 201}, "request.label_too_long"),
    ],
)
def test_bad_labels_are_422_problems(client, item_ids, data, code):
    assert_problem(client.post("/v1/classify", data={"id": item_ids["tone_440.wav"], **data}), 422, code)


def test_too_many_labels(open_client, item_ids):
    few = open_client(max_labels=3)
    assert (
        few.post("/classify", data={"id": item_ids["tone_440.wav"], "candidate_labels": ["a", "b", "c"]}).status_code
        == 200
    )
    assert_problem(
        few.post("/classify", data={"id": item_ids["tone_440.wav"], "candidate_labels": ["a", "b", "c", "d"]}),
        422,
        "request.too_many_labels",
    )


def test_audio_source_errors(client, library, item_ids):
    labels = {"candidate_labels": ["a", "b"]}
    assert_problem(client.post("/v1/classify", data=labels), 422, "request.audio_source")
    assert_problem(
        client.post("/v1/classify", files=_upload(library), data={**labels, "id": item_ids["tone_440.wav"]}),
        422,
        "request.audio_source",
    )
    assert_problem(client.post("/v1/classify", data={**labels, "id": 999999}), 404, "item.not_found")
    assert_problem(client.post("/v1/classify", data={**labels, "id": item_ids["garbage.wav"]}), 409, "item.not_indexed")
    assert_problem(client.post("/v1/classify", data={**labels, "id": 0}), 422, "request.invalid")


def _embedding_cache(client) -> dict[str, float]:
    samples = metric_samples(client.get("/metrics").text, "clapsearch_cache_total")
    return {r: samples.get((("kind", "embedding"), ("result", r)), 0) for r in ("hit", "miss")}


@pytest.mark.parametrize("size", [20_000, 0])
def test_repeated_labels_are_not_embedded_again_without_redis(open_client, item_ids, size):
    client = open_client(text_vector_cache_size=size)  # no redis_url: the process is the only cache
    labels = [f"{label} {size}" for label in LABELS]
    data = {"id": item_ids["hum.ogg"], "candidate_labels": labels}
    first = client.post("/v1/classify", data=data).json()["labels"]
    before = _embedding_cache(client)
    second = client.post("/v1/classify", data=data).json()["labels"]
    after = _embedding_cache(client)
    assert second == first
    if size:
        assert after["hit"] - before["hit"] == len(labels) and after["miss"] == before["miss"]
    else:  # turned off: every label is embedded again
        assert after["miss"] - before["miss"] == len(labels) and after["hit"] == before["hit"]
