"""Search answers are list pages like every other list (``items``, ``total``, ``limit``,
``offset``), and ``total`` is what paging walks: following the pages of any search yields exactly
``total`` hits, each once, whatever decided the count (the page's own candidates, the index's
size, or a search to paging's reach), and no more than CLAPSEARCH_MAX_OFFSET + limit."""

from __future__ import annotations

import pytest

from tests.service.conftest import assert_problem
from tests.service.conftest import valid_search as valid

QUERY = "rain on a roof"
# name -> (path, extra query parameters); each reaches total another way (indexer.paging.known_total)
CASES = {
    "plain": ("/v1/search", {"q": QUERY}),  # the whole index minus nothing
    "filtered": ("/v1/search", {"q": QUERY, "format": "WAV"}),  # the allowed ids
    "min-score": ("/v1/search", {"q": QUERY, "min_score": None}),  # a threshold (the 4th best score)
    "moments": ("/v1/search", {"q": QUERY, "segments": "true"}),  # distinct moments, short files whole
    "similar": ("/v1/items/{roof}/similar", {}),  # its own file left out
    "similar-filtered": ("/v1/items/{roof}/similar", {"format": "WAV"}),
}


def _walk(client, path: str, params: dict, limit: int) -> tuple[list[tuple], set[int]]:
    """Every page until an empty one: the hits, and the totals the pages announced."""
    hits: list[tuple] = []
    totals = set()
    offset = 0
    while True:
        body = valid(client.get(path, params={**params, "limit": limit, "offset": offset}))
        assert body["limit"] == limit and body["offset"] == offset
        totals.add(body["total"])
        if not body["items"]:
            return hits, totals
        hits += [(h["id"], h["start_s"], h["end_s"]) for h in body["items"]]
        offset += limit


@pytest.mark.parametrize("case", sorted(CASES))
def test_paging_walks_exactly_total_hits(case, client, item_ids):
    path, params = CASES[case]
    path = path.format(roof=item_ids["roof.wav"])
    if "min_score" in params:  # the query's 4th best score: a cut inside the ranking
        plain = valid(client.get("/v1/search", params={"q": QUERY, "limit": 100}))
        params = {**params, "min_score": sorted((h["score"] for h in plain["items"]), reverse=True)[3]}
    whole = valid(client.get(path, params={**params, "limit": 100}))
    assert whole["total"] == len(whole["items"]) > 2, whole["total"]  # one page holds them all
    hits, totals = _walk(client, path, params, limit=2)
    assert totals == {whole["total"]}, totals  # every page, the last and past-the-end ones included
    assert len(hits) == len(set(hits)) == whole["total"]


def test_thresholds_count_only_the_hits_that_pass(client):
    everything = valid(client.get("/v1/search", params={"q": QUERY, "limit": 100}))
    scores = sorted((h["score"] for h in everything["items"]), reverse=True)
    cut = scores[len(scores) // 2]
    above = valid(client.get("/v1/search", params={"q": QUERY, "limit": 1, "min_score": cut}))
    assert above["total"] == sum(s >= cut for s in scores) < everything["total"]
    assert len(above["items"]) == 1


def test_total_stops_at_paging_reach(open_client):
    shallow = open_client(max_offset=2)
    for params in ({}, {"min_score": -1}, {"segments": "true"}):
        body = valid(shallow.get("/v1/search", params={"q": QUERY, "limit": 3, **params}))
        assert body["total"] == 2 + 3, params  # offset 2 is the deepest page: hits 3..5
        deepest = valid(shallow.get("/v1/search", params={"q": QUERY, "limit": 3, "offset": 2, **params}))
        assert deepest["total"] == 5 and len(deepest["items"]) == 3
    assert_problem(shallow.get("/v1/search", params={"q": QUERY, "offset": 3}), 422, "request.offset")


def test_texts_are_a_page_of_the_ranked_candidates(client, item_ids):
    item = item_ids["tone_440.wav"]
    mine = ["a sine wave tone", "a dog barking", "rain on a tin roof"]
    fields = {"id": item, "texts": mine, "vocabulary": "false"}
    whole = client.post("/v1/search/texts", params={**fields, "limit": 10}).json()
    assert whole["total"] == 3 and whole["limit"] == 10 and whole["offset"] == 0
    pages = [client.post("/v1/search/texts", params={**fields, "limit": 2, "offset": o}).json() for o in (0, 2, 4)]
    assert [p["total"] for p in pages] == [3, 3, 3]
    assert [h for p in pages for h in p["items"]] == whole["items"]
    vocabulary = client.post("/v1/search/texts", params={"id": item, "texts": mine, "limit": 5}).json()
    assert vocabulary["total"] > 500 + len(mine) - 1 and len(vocabulary["items"]) == 5
