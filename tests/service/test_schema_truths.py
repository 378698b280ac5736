"""What Schemathesis found (issue 16) where the OpenAPI schema and the server disagreed, pinned:
the server now holds JSON bodies to their types, counts labels as sent, and the schema states
the rules the routes enforce (form fields, one audio source, configured limits)."""

from __future__ import annotations

import pytest

from tests.service.conftest import assert_problem


@pytest.mark.parametrize(
    "body",
    [
        {"candidate_labels": ["rain"], "id": 1, "multi_label": 0},  # 0 is not false in JSON
        {"candidate_labels": ["rain"], "id": "1"},  # "1" is not 1
    ],
)
def test_a_json_body_is_held_to_its_types(client, body):
    assert_problem(client.post("/v1/classify", json=body), 422, "request.invalid")


def test_the_same_values_in_a_form_are_read_as_text(client, item_ids):
    form = {"candidate_labels": "rain", "id": str(item_ids["tone_220.wav"]), "multi_label": "0"}
    assert client.post("/v1/classify", data=form).status_code == 200


def test_labels_are_counted_as_sent(open_client):
    client = open_client(max_labels=3)
    same = {"candidate_labels": ["rain"] * 4, "id": 1}  # one label after merging, four sent
    assert_problem(client.post("/v1/classify", json=same), 422, "request.too_many_labels")
    assert_problem(client.post("/v1/search/texts", json={"texts": ["a"] * 4, "id": 1}), 422, "request.too_many_labels")


def test_the_schema_states_the_configured_limits_and_the_audio_source(open_client):
    spec = open_client(max_offset=77, max_labels=9).get("/openapi.json").json()
    offset = next(p for p in spec["paths"]["/v1/search"]["get"]["parameters"] if p["name"] == "offset")
    assert offset["schema"]["maximum"] == 77
    classify = spec["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert classify["application/json"]["schema"]["properties"]["candidate_labels"]["maxItems"] == 9
    assert classify["application/json"]["schema"]["additionalProperties"] is False
    assert classify["multipart/form-data"]["schema"]["oneOf"] == [{"required": ["file"]}, {"required": ["id"]}]
    assert "audio/*" in classify["multipart/form-data"]["encoding"]["file"]["contentType"]
    exports = spec["paths"]["/v1/search"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "text/csv"} <= set(exports)
    # a blank form field is an absent one: a required one may not be blank (found by the long run)
    ingest_form = spec["paths"]["/v1/jobs/ingest"]["post"]["requestBody"]["content"][
        "application/x-www-form-urlencoded"
    ]
    assert ingest_form["schema"]["properties"]["path"]["minLength"] == 1
    q = next(p for p in spec["paths"]["/v1/search"]["get"]["parameters"] if p["name"] == "q")
    assert q["schema"]["pattern"] == r"\S"
