"""Words plus sound on ``/v1/search``: ``mode=hybrid`` (the default) fuses the vector ranking
with the words of file names, folders and tags, ``mode=text`` ranks by the words alone,
``mode=audio`` by the sound alone; filters apply to both rankings, paging to the fused list,
queries by example and moment searches rank by sound."""

from __future__ import annotations

import pytest

from tests.service.conftest import assert_problem, names, ranking, valid_search


def _search(client, q: str, **params):
    return client.get("/v1/search", params={"q": q, **params})


def test_words_in_a_name_or_tag_lift_the_file_in_hybrid_and_text_mode(client):
    # "Morning Birds" is birds.ogg's embedded title; the generated tones sound like no bird
    assert names(_search(client, "morning birds", mode="text")) == ["birds.ogg"]
    assert names(_search(client, "morning birds"))[0] == "birds.ogg"  # hybrid by default
    assert names(_search(client, "tone"))[0].startswith("tone_")  # the tones/ folder and the names
    assert sorted(names(_search(client, "tone", mode="text"))) == sorted(
        f"tone_{f}.wav" for f in (220, 330, 440, 660, 880, 1760)
    )


def test_a_query_whose_words_match_nothing_ranks_like_audio_mode(client):
    for q in ("a quiet xylophone qzx", "the sound of a"):
        hybrid = valid_search(_search(client, q))
        assert ranking(_search(client, q, mode="audio")) == [(h["id"], h["score"]) for h in hybrid["items"]]
        assert hybrid["items"]
        text = valid_search(_search(client, q, mode="text"))
        assert text["items"] == []


def test_scores_stay_cosines_in_every_mode(client):
    audio = dict(ranking(_search(client, "heavy rain", mode="audio", limit=50)))
    for mode in ("hybrid", "text"):
        hits = ranking(_search(client, "heavy rain", mode=mode, limit=50))
        assert hits and all(audio[i] == score for i, score in hits)


def test_filters_apply_to_the_words_too(client):
    assert sorted(names(_search(client, "rain", mode="text"))) == ["rain.flac", "roof.wav"]
    assert names(_search(client, "rain", mode="text", format="WAV")) == ["roof.wav"]
    hybrid = names(_search(client, "rain", format="WAV"))
    assert hybrid[0] == "roof.wav" and all(n.endswith(".wav") for n in hybrid)
    assert names(_search(client, "rain", mode="text", tag="genre:nature")) == []


def test_pages_continue_the_fused_ranking(client):
    whole = ranking(_search(client, "heavy rain", limit=12))
    pages = [ranking(_search(client, "heavy rain", limit=4, offset=o)) for o in (0, 4, 8)]
    assert [hit for page in pages for hit in page] == whole


def test_post_body_takes_the_mode(client):
    posted = client.post("/v1/search", json={"q": "morning birds", "mode": "text"})
    assert names(posted) == ["birds.ogg"]


@pytest.mark.parametrize(
    "params",
    [{"mode": "words"}, {"mode": ""}, {"mode": "TEXT"}, {"mode": "text\x00"}],
)
def test_unknown_modes_are_422(client, params):
    assert_problem(_search(client, "rain", **params), 422)


def test_example_and_moment_searches_rank_by_sound(client, item_ids):
    item = item_ids["rain.flac"]
    assert ranking(client.get(f"/v1/items/{item}/similar")) == ranking(
        client.get(f"/v1/items/{item}/similar", params={"mode": "audio"})
    )
    assert_problem(client.get(f"/v1/items/{item}/similar", params={"mode": "text"}), 422, "request.mode")
    moments = ranking(_search(client, "drone", segments="true"))
    assert moments == ranking(_search(client, "drone", segments="true", mode="audio"))
    assert_problem(_search(client, "drone", segments="true", mode="text"), 422, "request.mode")
