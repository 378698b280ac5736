"""Search endpoints against the real app and the shipped model: text -> audio (both routes),
paging, score cut-off, filters inside the search, segments, audio -> audio (upload, id,
similar) and audio -> text."""

from __future__ import annotations

import pytest

from tests.service.conftest import HOP_S, LONG, SEGMENT_S, assert_problem, names, ranking
from tests.service.conftest import valid_search as valid

QUERY = "dog barking"


def _all(client, q=QUERY, **params):
    response = client.get("/v1/search", params={"q": q, "limit": 100, **params})
    return valid(response)["items"]


def _scores_sorted(results) -> bool:
    scores = [hit["score"] for hit in results]
    return scores == sorted(scores, reverse=True)


# ----------------------------------------------------------------------------- text -> audio


def test_post_search_alias_and_get_v1_give_the_same_ranking(client, library, item_ids):
    posted = client.post("/search", params={"q": QUERY, "limit": 100})
    got = client.get("/v1/search", params={"q": QUERY, "limit": 100})
    assert ranking(posted) == ranking(got)
    valid(posted)
    body = valid(got)
    assert body["query"] == QUERY and body["collection"] == "default" and body["model"] == "clapsearch-sfx-v1"
    assert body["cached"] is False and body["limit"] == 100 and body["offset"] == 0
    results = body["items"]
    # every indexed file once, the one that failed to ingest never
    assert sorted(hit["name"] for hit in results) == sorted(library.names())
    assert _scores_sorted(results)
    assert all(-1.0 <= hit["score"] <= 1.0 for hit in results)
    for hit in results:
        track = library.tracks[hit["name"]]
        assert hit["id"] == item_ids[hit["name"]]
        assert hit["path"] == str(library.path(hit["name"]))
        assert hit["format"] == track.format
        assert hit["duration_s"] == pytest.approx(track.seconds, abs=0.05)
        assert hit["tags"] == track.tags  # {} when the file has none, never null
        assert hit["start_s"] is None and hit["end_s"] is None and hit["segment_id"] is None
        assert hit["audio_url"] == f"/v1/items/{hit['id']}/audio"
        assert hit["peaks_url"] == f"/v1/items/{hit['id']}/peaks"


def test_different_queries_rank_differently(client):
    """The query text matters (the ranking is not a fixed order of the library)."""
    assert ranking(client.get("/v1/search", params={"q": "a high pitched whistle", "limit": 100})) != ranking(
        client.get("/v1/search", params={"q": QUERY, "limit": 100})
    )


def test_limit_is_capped_at_max_limit(open_client):
    capped = open_client(max_limit=4)
    response = capped.get("/v1/search", params={"q": QUERY, "limit": 50})
    assert response.status_code == 200
    assert response.json()["limit"] == 4
    assert len(response.json()["items"]) == 4


def test_default_limit_is_ten(client):
    assert len(names(client.get("/v1/search", params={"q": QUERY}))) == 10


def test_offset_pages_are_disjoint_and_continue_the_ranking(client):
    full = ranking(client.get("/v1/search", params={"q": QUERY, "limit": 9}))
    pages = [ranking(client.get("/v1/search", params={"q": QUERY, "limit": 3, "offset": off})) for off in (0, 3, 6)]
    assert all(len(page) == 3 for page in pages)
    ids = [i for page in pages for i, _ in page]
    assert len(set(ids)) == 9
    assert pages[0] + pages[1] + pages[2] == full
    past_the_end = client.get("/v1/search", params={"q": QUERY, "offset": 50})
    assert past_the_end.status_code == 200 and past_the_end.json()["items"] == []


def test_min_score_keeps_exactly_the_hits_at_or_above_it(client):
    full = _all(client)
    threshold = (full[4]["score"] + full[5]["score"]) / 2  # between two hits: no rounding question
    kept = _all(client, min_score=threshold)
    assert [h["id"] for h in kept] == [h["id"] for h in full[:5]]
    assert _all(client, min_score=1.0) == []
    assert len(_all(client, min_score=-1.0)) == len(full)


def test_min_score_equal_to_a_shown_score_keeps_that_hit(client):
    full = _all(client)
    for hit in full[:8]:
        kept = _all(client, min_score=hit["score"])
        assert hit["id"] in [h["id"] for h in kept], (hit, kept)


# ----------------------------------------------------------------------------- filters


def _tags_match(tags: dict, rule: str) -> bool:
    key, sep, value = rule.partition(":")
    values = [tags.get(key, "")] if sep else list(tags.values())
    needle = (value if sep else rule).lower()
    return any(needle in v.lower() for v in values)


FILTERS = {
    "format": ({"format": "FLAC"}, lambda t, p: t.format == "FLAC"),
    "formats-any-case": ({"format": ["ogg", "Mp3"]}, lambda t, p: t.format in {"OGG", "MP3"}),
    "duration": ({"min_duration": 2.5, "max_duration": 4.0}, lambda t, p: 2.5 <= t.seconds <= 4.0),
    "min-duration": ({"min_duration": 4.5}, lambda t, p: t.seconds >= 4.5),
    "tag-any": ({"tag": "ambient"}, lambda t, p: _tags_match(t.tags, "ambient")),
    "tag-key": ({"tag": "genre:nature"}, lambda t, p: _tags_match(t.tags, "genre:nature")),
    "tag-key-is-not-any": ({"tag": "genre:rain"}, lambda t, p: False),
    "tags-all": ({"tag": ["ambient", "title:roof"]}, lambda t, p: t.name == "roof.wav"),
    "path-prefix": ({"path_prefix": "<root>/tagged/"}, lambda t, p: t.rel.startswith("tagged/")),
    "combined": (
        {"path_prefix": "<root>/tones/", "max_duration": 2.5, "format": "wav"},
        lambda t, p: t.rel.startswith("tones/") and t.seconds <= 2.5,
    ),
}


@pytest.mark.parametrize("case", list(FILTERS))
def test_filters_return_only_matching_files_and_fill_the_page(client, library, case):
    params, wanted = FILTERS[case]
    params = {k: (v.replace("<root>", str(library.root)) if isinstance(v, str) else v) for k, v in params.items()}
    expected = {name for name, track in library.tracks.items() if wanted(track, library.path(name))}
    full = [hit["name"] for hit in _all(client)]
    in_rank_order = [name for name in full if name in expected]

    everything = _all(client, **params)
    assert [hit["name"] for hit in everything] == in_rank_order
    assert _scores_sorted(everything)
    # a small page is still full: the filter runs inside the search, not on its first page
    page = names(client.get("/v1/search", params={"q": QUERY, "limit": 2, **params}))
    assert page == in_rank_order[:2]


def test_filtered_scores_equal_the_unfiltered_ones(client):
    full = {hit["id"]: hit["score"] for hit in _all(client)}
    for hit in _all(client, format="OGG"):
        assert hit["score"] == pytest.approx(full[hit["id"]], abs=1e-5)


# ----------------------------------------------------------------------------- segments


def test_segments_give_moments_in_long_files_and_whole_spans_for_short_ones(client, library):
    results = _all(client, segments="true")
    assert _scores_sorted(results)
    long_hits = [hit for hit in results if hit["name"] == LONG]
    short_hits = [hit for hit in results if hit["name"] != LONG]
    long_s = library.tracks[LONG].seconds
    # moments are distinct: overlapping windows of the long file fold into spans that do not
    # overlap, each a run of whole windows inside the file
    spans = sorted((hit["start_s"], hit["end_s"]) for hit in long_hits)
    assert spans and all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    n_windows = int((long_s - SEGMENT_S) / HOP_S) + 1
    window_starts = {HOP_S * i for i in range(n_windows)}
    for start, end in spans:
        assert start in window_starts and end - SEGMENT_S in window_starts and end <= long_s
    assert all(hit["segment_id"] is not None for hit in long_hits)
    # every short file once, as a whole-file span
    assert sorted(hit["name"] for hit in short_hits) == sorted(library.names() - {LONG})
    for hit in short_hits:
        assert hit["segment_id"] is None
        assert hit["start_s"] == 0.0
        assert hit["end_s"] == pytest.approx(library.tracks[hit["name"]].seconds, abs=0.05)
        assert hit["end_s"] == hit["duration_s"]


def test_segment_pages_continue_the_ranking(client):
    everything = _all(client, segments="true")
    page = {"q": QUERY, "segments": "true", "limit": 3}
    first = client.get("/v1/search", params=page).json()["items"]
    second = client.get("/v1/search", params={**page, "offset": 3}).json()["items"]
    key = lambda hit: (hit["id"], hit["start_s"])  # noqa: E731
    assert [key(h) for h in first + second] == [key(h) for h in everything[:6]]


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"tag": "ambient"}, {"rain.flac", "roof.wav"}),
        ({"format": "FLAC"}, {LONG, "rain.flac"}),
        ({"min_duration": 4.5}, {LONG, "hum.ogg"}),
    ],
)
def test_segments_with_a_filter(client, params, expected):
    response = client.get("/v1/search", params={"q": QUERY, "segments": "true", "limit": 100, **params})
    assert response.status_code == 200, response.text[:300]
    assert {hit["name"] for hit in response.json()["items"]} == expected


# ----------------------------------------------------------------------------- audio -> audio


def test_uploaded_library_file_finds_itself_first(client, library):
    path = library.path("rain.flac")
    response = client.post(
        "/v1/search/audio", params={"limit": 5}, files={"file": ("query.flac", path.read_bytes(), "audio/flac")}
    )
    body = valid(response)
    assert body["query"] == "query.flac"
    top = body["items"][0]
    assert top["name"] == "rain.flac" and top["score"] == pytest.approx(1.0, abs=2e-3)
    assert _scores_sorted(body["items"]) and len(body["items"]) == 5
    # exclude_self only concerns an item id, never an upload
    again = client.post(
        "/v1/search/audio",
        params={"limit": 5, "exclude_self": "true"},
        files={"file": ("query.flac", path.read_bytes(), "audio/flac")},
    )
    assert names(again)[0] == "rain.flac"


def test_search_by_id_excludes_the_item_itself(client, item_ids):
    item = item_ids["birds.ogg"]
    excluded = client.post("/v1/search/audio", params={"id": item, "limit": 100})
    assert excluded.status_code == 200, excluded.text
    assert excluded.json()["query"] == f"item:{item}"
    hits = ranking(excluded)
    assert item not in [i for i, _ in hits] and len(hits) == len(item_ids) - 2  # self and the failed file
    included = ranking(client.post("/v1/search/audio", params={"id": item, "limit": 100, "exclude_self": "false"}))
    assert included[0][0] == item and included[0][1] == pytest.approx(1.0, abs=1e-4)
    assert included[1:] == hits


def test_similar_equals_search_by_id(client, item_ids):
    item = item_ids["tone_880.wav"]
    similar = client.get(f"/v1/items/{item}/similar", params={"limit": 5})
    by_id = client.post("/v1/search/audio", params={"id": item, "limit": 5})
    assert valid(similar)["query"] == valid(by_id)["query"] == f"item:{item}"
    assert ranking(similar) == ranking(by_id)
    assert item not in [i for i, _ in ranking(similar)] and len(ranking(similar)) == 5


def test_similar_of_an_unknown_or_failed_item(client, item_ids):
    assert_problem(client.get("/v1/items/999999/similar"), 404, "item.not_found")
    assert_problem(client.get(f"/v1/items/{item_ids['garbage.wav']}/similar"), 409, "item.not_indexed")


# ----------------------------------------------------------------------------- audio -> text


def test_texts_mix_vocabulary_and_user_texts(client, item_ids):
    mine = ["a sine wave tone", "a dog barking"]
    response = client.post("/v1/search/texts", params={"id": item_ids["tone_440.wav"], "texts": mine, "limit": 1000})
    assert response.status_code == 200, response.text
    results = response.json()["items"]
    assert _scores_sorted(results)
    sources = {hit["source"] for hit in results}
    assert sources == {"vocabulary", "user"}
    assert sorted(hit["text"] for hit in results if hit["source"] == "user") == sorted(mine)
    assert len(results) > 500  # AudioSet's labels
    seven = client.post("/v1/search/texts", params={"id": item_ids["tone_440.wav"], "limit": 7})
    assert len(seven.json()["items"]) == 7


def test_texts_without_vocabulary_only_score_the_user_texts(client, item_ids):
    mine = ["a sine wave tone", "a dog barking", "rain on a tin roof"]
    response = client.post(
        "/v1/search/texts", params={"id": item_ids["tone_440.wav"], "texts": mine, "vocabulary": "false"}
    )
    results = response.json()["items"]
    assert sorted(hit["text"] for hit in results) == sorted(mine)
    assert {hit["source"] for hit in results} == {"user"}
    assert _scores_sorted(results)
    assert (
        client.post("/v1/search/texts", params={"id": item_ids["tone_440.wav"], "vocabulary": "false"}).json()["items"]
        == []
    )


def test_texts_scores_are_the_cosines_classify_reports(client, item_ids, library):
    """The same clip and text give the same cosine through /v1/search/texts and /v1/classify."""
    item = item_ids["roof.wav"]
    texts = client.post("/v1/search/texts", params={"id": item, "texts": ["falling rain"], "vocabulary": "false"})
    classify = client.post(
        "/v1/classify", data={"id": item, "candidate_labels": ["falling rain", "x"], "hypothesis_template": "{}"}
    )
    cosine = {hit["label"]: hit["cosine"] for hit in classify.json()["labels"]}["falling rain"]
    assert texts.json()["items"][0]["score"] == pytest.approx(cosine, abs=1e-5)
    upload = client.post(
        "/v1/search/texts",
        params={"texts": ["falling rain"], "vocabulary": "false"},
        files={"file": ("roof.wav", library.path("roof.wav").read_bytes(), "audio/wav")},
    )
    assert upload.status_code == 200 and upload.json()["query"] == "roof.wav"
    assert upload.json()["items"][0]["score"] == pytest.approx(cosine, abs=2e-3)


# ----------------------------------------------------------------------------- bad parameters


@pytest.mark.parametrize(
    "params, code",
    [
        ({"q": QUERY, "limit": 0}, "request.invalid"),
        ({"q": QUERY, "limit": -3}, "request.invalid"),
        ({"q": QUERY, "offset": -1}, "request.invalid"),
        ({"q": QUERY, "offset": 1001}, "request.offset"),
        ({"q": QUERY, "min_duration": 5, "max_duration": 2}, "request.invalid"),
        ({"q": QUERY, "min_duration": -1}, "request.invalid"),
        ({"q": QUERY, "min_score": 2}, "request.invalid"),
        ({"q": QUERY, "limit": "ten"}, "request.invalid"),
        ({"q": QUERY, "segments": "maybe"}, "request.invalid"),
        ({"q": "   "}, "text.empty"),
        ({"q": "x" * 1001}, "text.too_long"),
        ({}, "request.invalid"),
    ],
)
def test_absurd_parameters_are_422_problems(client, params, code):
    assert_problem(client.get("/v1/search", params=params), 422, code)


def test_offset_limit_follows_settings(open_client):
    shallow = open_client(max_offset=5)
    assert shallow.get("/v1/search", params={"q": QUERY, "offset": 5}).status_code == 200
    assert_problem(shallow.get("/v1/search", params={"q": QUERY, "offset": 6}), 422, "request.offset")


def test_unknown_collection_is_a_404_problem(client, item_ids):
    for response in (
        client.get("/v1/search", params={"q": QUERY, "collection": "nope"}),
        client.post("/v1/search/audio", params={"id": item_ids["hum.ogg"], "collection": "nope"}),
    ):
        assert_problem(response, 404, "store.collection_not_found")


def test_relevance_is_null_and_min_relevance_refused_without_a_calibration(client, library, item_ids):
    """The fixture's model (v1) has no score calibration: relevance is null, and asking to filter
    by it is a clear 422, never a silent no-op."""
    results = _all(client)
    assert results and all(hit["relevance"] is None for hit in results)
    response = client.get("/v1/search", params={"q": QUERY, "min_relevance": 0.5})
    assert_problem(response, 422, "request.min_relevance")
    assert_problem(client.get("/v1/search", params={"q": QUERY, "min_relevance": 2}), 422)


def test_calibrated_model_shows_relevance_and_filters_by_it(client, library, item_ids, monkeypatch):
    from indexer.models.manifest import ScoreCalibration

    runtime = client.app.state.runtime
    calibration = ScoreCalibration(slope=10.0, intercept=-2.0, fitted_on="test")
    calibrated = runtime.manifest.model_copy(update={"score_calibration": calibration})
    monkeypatch.setattr(type(runtime), "manifest", property(lambda self: calibrated))
    results = _all(client, q="rain falling")
    assert all(hit["relevance"] == pytest.approx(calibration.relevance(hit["score"]), abs=1e-6) for hit in results)
    cut = sorted(hit["relevance"] for hit in results)[len(results) // 2]
    kept = _all(client, q="rain falling", min_relevance=cut)
    assert kept and all(hit["relevance"] >= cut for hit in kept) and len(kept) < len(results)
