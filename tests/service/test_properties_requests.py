"""Property-based tests (Hypothesis) of request validation: arbitrary query parameters, JSON
bodies, form fields and raw bytes sent to the search, classify, describe and item routes get a
2xx answer or a 4xx problem+json, never a 5xx. Example counts follow the Hypothesis profile
(tests/conftest.py: bounded in CI, ``CLAPSEARCH_TEST_LONG=1`` for many more)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.service.conftest import assert_problem  # noqa: E402

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)  # what a URL or JSON can carry
NUMBERISH = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "-0", "1e400", "0x10", " 5", "true", "null", "NaN", "∞"]),
)
SEARCH_KEYS = ["q", "collection", "limit", "offset", "min_score", "min_relevance", "min_duration", "max_duration"]
SEARCH_KEYS += ["format", "tag", "path_prefix", "segments"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
ROUTE_KEYS = {
    "/v1/search": ["q", *SEARCH_KEYS],
    "/search": ["q", *SEARCH_KEYS],
    "/v1/search/audio": ["id", "exclude_self", *SEARCH_KEYS],
    "/v1/classify": ["id", "candidate_labels", "hypothesis_template", "multi_label"],
    "/v1/search/texts": ["id", "limit", "texts", "vocabulary"],
}


# plausible values first (so many examples get past validation and run a search), then anything
VALUES = st.one_of(TEXT, st.integers(-5, 2000), st.floats(-2, 2), st.lists(TEXT, max_size=3), JSON_VALUES)


def known_or_any(keys: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(keys) | TEXT


def check(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert_problem(response, response.status_code)
    else:
        assert response.headers["content-type"].startswith("application/json"), response.headers


@given(
    params=st.lists(st.tuples(known_or_any(SEARCH_KEYS), NUMBERISH | TEXT), max_size=8),
    q=st.none() | TEXT,
    path=st.sampled_from(["/v1/search", "/search", "/v1/items/1/similar", "/v1/duplicates", "/v1/collections"]),
)
def test_arbitrary_query_parameters_get_2xx_or_a_4xx_problem(client, params, q, path):
    if q is not None:
        params = [("q", q), *params]
    check(client.get(path, params=params))


@given(route=st.sampled_from(sorted(ROUTE_KEYS)), data=st.data())
def test_arbitrary_json_bodies_get_2xx_or_a_4xx_problem(client, route, data):
    body = data.draw(st.dictionaries(st.sampled_from(ROUTE_KEYS[route]), VALUES, max_size=5))
    body.update(data.draw(st.dictionaries(TEXT, JSON_VALUES, max_size=1)))  # sometimes an unknown field
    check(client.post(route, json=body))


@given(route=st.sampled_from(sorted(ROUTE_KEYS)), data=st.data())
def test_arbitrary_form_fields_get_2xx_or_a_4xx_problem(client, route, data):
    fields = data.draw(st.lists(st.tuples(known_or_any(ROUTE_KEYS[route]), TEXT | NUMBERISH), max_size=6))
    check(client.post(route, data=dict(fields) if data.draw(st.booleans()) else fields_as_pairs(fields)))


def fields_as_pairs(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in fields:
        out.setdefault(key, []).append(value)
    return out


@given(
    route=st.sampled_from(sorted(ROUTE_KEYS)),
    content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", "", "a/b"]),
    raw=st.binary(max_size=200) | TEXT.map(str.encode) | JSON_VALUES.map(lambda v: json.dumps(v).encode()),
)
def test_arbitrary_raw_bodies_get_2xx_or_a_4xx_problem(client, route, content_type, raw):
    check(client.post(route, content=raw, headers={"content-type": content_type} if content_type else {}))


@given(
    segment=TEXT.filter(lambda s: s not in ("", ".", "..") and "/" not in s and "?" not in s and "#" not in s)
    | NUMBERISH,
    tail=st.sampled_from(["", "/audio", "/peaks", "/similar"]),
)
def test_arbitrary_item_ids_get_a_4xx_problem_or_the_item(client, segment, tail):
    check(client.get(f"/v1/items/{segment}{tail}", headers={"Range": "bytes=0-10"}))
