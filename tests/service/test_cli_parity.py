"""`indexer search` and the HTTP API give the same answers: the same hits, in the same order,
with the same scores and fields, in the same list envelope (``items``, ``total``, ``limit``,
``offset``), for text, example and similar-item queries, with filters, paging, thresholds and
moments; and the same error code where one refuses."""

from __future__ import annotations

import json

import pytest

from indexer import cli
from tests.service.conftest import MODEL

URL_FIELDS = {"audio_url", "peaks_url"}

# (CLI options, API query parameters) meaning the same request
CASES = {
    "plain": ([], {}),
    "tag": (["--tag", "genre:ambient"], {"tag": "genre:ambient"}),
    "tags-and-format": (
        ["--tag", "rain", "--format", "flac", "--format", "WAV"],
        {"tag": "rain", "format": ["flac", "WAV"]},
    ),
    "durations-paged": (
        ["--min-duration", "2", "--max-duration", "4", "-k", "3", "--offset", "1"],
        {"min_duration": 2, "max_duration": 4, "limit": 3, "offset": 1},
    ),
    "path-prefix": (["--path-prefix", "{root}/tones"], {"path_prefix": "{root}/tones"}),
    "min-score": (["--min-score", "0.2"], {"min_score": 0.2}),
    "moments": (["--segments", "-k", "20"], {"segments": "true", "limit": 20}),
    "moments-filtered": (["--segments", "--format", "FLAC"], {"segments": "true", "format": "FLAC"}),
    "mode-audio": (["--mode", "audio"], {"mode": "audio"}),
    "mode-text": (["--mode", "text"], {"mode": "text"}),
    "mode-text-filtered-paged": (
        ["--mode", "text", "--format", "FLAC", "--format", "WAV", "-k", "1", "--offset", "1"],
        {"mode": "text", "format": ["FLAC", "WAV"], "limit": 1, "offset": 1},
    ),
    "mode-hybrid-tag-paged": (
        ["--mode", "hybrid", "--tag", "ambient", "-k", "1", "--offset", "1"],
        {"mode": "hybrid", "tag": "ambient", "limit": 1, "offset": 1},
    ),
}
# word-only cases return nothing where no name or tag holds a query word
EMPTY_OK = {("min-score", "heavy rain"), ("min-score", "a high beep"), ("mode-text-filtered-paged", "a high beep")}


ENVELOPE = ("collection", "items", "total", "limit", "offset")


def _cli_hits(capsys, home, args: list[str]) -> dict:
    capsys.readouterr()
    code = cli.main(["search", *args, "--home", str(home), "--model", str(MODEL), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    page = json.loads(out.out)
    assert sorted(page) == sorted(ENVELOPE)
    return page


def _api_hits(response) -> dict:
    """The API's answer as the CLI gives it: the envelope's fields, the hits without their URLs."""
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    items = [{k: v for k, v in hit.items() if k not in URL_FIELDS} for hit in body["items"]]
    return {**{k: body[k] for k in ENVELOPE}, "items": items}


def _fill(value, root: str):
    if isinstance(value, list):
        return [_fill(v, root) for v in value]
    return value.replace("{root}", root) if isinstance(value, str) else value


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("query", ["heavy rain", "a high beep"])
def test_text_search_answers_match(case, query, client, ingested_home, library, capsys):
    options, params = CASES[case]
    root = str(library.root)
    api = _api_hits(client.get("/v1/search", params={"q": query, **{k: _fill(v, root) for k, v in params.items()}}))
    ours = _cli_hits(capsys, ingested_home, [query, *_fill(options, root)])
    assert ours == api
    assert api["items"] or (case, query) in EMPTY_OK  # the cases are built to return something
    assert len(api["items"]) <= api["total"]


@pytest.mark.parametrize("case", ["plain", "tag", "durations-paged", "moments", "mode-audio"])
def test_similar_item_and_example_answers_match(case, client, ingested_home, item_ids, library, capsys):
    options, params = CASES[case]
    item = item_ids["rain.flac"]
    api = _api_hits(client.get(f"/v1/items/{item}/similar", params=params))
    assert _cli_hits(capsys, ingested_home, ["--item", str(item), *options]) == api
    assert all(hit["id"] != item for hit in api["items"])
    path = library.path("rain.flac")
    with path.open("rb") as f:
        uploaded = _api_hits(client.post("/v1/search/audio", params=params, files={"file": ("rain.flac", f)}))
    assert _cli_hits(capsys, ingested_home, ["--audio", str(path), *options]) == uploaded


def test_refusals_carry_the_same_code(client, ingested_home, capsys):
    cases = [
        (["x", "--min-relevance", "0.5"], {"q": "x", "min_relevance": 0.5}, "request.min_relevance"),
        (["   "], {"q": "   "}, "text.empty"),
        (["x" * 1001], {"q": "x" * 1001}, "text.too_long"),
        (["--item", str(2**63)], None, "item.not_found"),
        (["x", "--segments", "--mode", "text"], {"q": "x", "segments": "true", "mode": "text"}, "request.mode"),
    ]
    for options, params, code in cases:
        capsys.readouterr()
        assert cli.main(["search", *options, "--home", str(ingested_home), "--model", str(MODEL)]) == 2
        assert f"error [{code}]" in capsys.readouterr().err
        if params is not None:
            response = client.get("/v1/search", params=params)
            assert response.status_code == 422 and response.json()["code"] == code
    response = client.get(f"/v1/items/{2**63}/similar")
    assert response.status_code == 404 and response.json()["code"] == "item.not_found"


# ----------------------------------------------------------------------------- tempo and key

# (CLI options, API query parameters, the files expected) on the analysed library below
MUSIC_CASES = {
    "bpm": (["--bpm-min", "118", "--bpm-max", "122"], {"bpm_min": 118, "bpm_max": 122}, {"click_120.wav"}),
    "key": (["--key", "A minor"], {"key": "A minor"}, {"a_minor.wav"}),
    "key-any-mode-with-format": (["--key", "c", "--format", "WAV"], {"key": "c", "format": "WAV"}, {"c_major.wav"}),
    "slow-moments": (
        ["--bpm-max", "95", "--segments", "-k", "20"],
        {"bpm_max": 95, "segments": "true", "limit": 20},
        {"click_90.wav", "a_minor.wav", "c_major.wav"},
    ),
}


@pytest.fixture(scope="module")
def analysed(ingested_home, tmp_path_factory):
    """A copy of the shared home plus generated music, ingested with ``--analyze``, and an app over it."""
    import shutil

    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.music_library import musical_library
    from tests.service.conftest import service_settings, settle

    pytest.importorskip("librosa")
    root = tmp_path_factory.mktemp("analysed")
    home = root / "home"
    shutil.copytree(ingested_home, home, symlinks=True)
    musical_library(root / "music")
    code = cli.main(["ingest", str(root / "music"), "--analyze", "--workers", "1", "-q"] + _home(home))
    assert code == 0
    with TestClient(create_app(service_settings(home)), raise_server_exceptions=False) as client:
        yield home, client
        settle(client)


def _home(home) -> list[str]:
    return ["--home", str(home), "--model", str(MODEL)]


@pytest.mark.parametrize("case", sorted(MUSIC_CASES))
def test_tempo_and_key_filters_answer_alike(case, analysed, capsys):
    home, client = analysed
    options, params, expected = MUSIC_CASES[case]
    api = _api_hits(client.get("/v1/search", params={"q": "music", **params}))
    assert _cli_hits(capsys, home, ["music", *options]) == api
    assert {hit["name"] for hit in api["items"]} == expected and api["total"] == len(expected)
    assert all(hit["analysis"] is not None for hit in api["items"])


def test_tempo_and_key_refusals_carry_the_same_code(analysed, capsys):
    home, client = analysed
    for options, params in (
        (["--key", "H minor"], {"key": "H minor"}),
        (["--bpm-min", "130", "--bpm-max", "120"], {"bpm_min": 130, "bpm_max": 120}),
    ):
        capsys.readouterr()
        assert cli.main(["search", "x", *options, *_home(home)]) == 2
        assert "error [request.filter_value]" in capsys.readouterr().err
        response = client.get("/v1/search", params={"q": "x", **params})
        assert response.status_code == 422 and response.json()["code"] == "request.filter_value"
    item = _api_hits(client.get("/v1/search", params={"q": "music", "key": "A minor"}))["items"][0]["id"]
    assert client.get(f"/v1/items/{item}").json()["analysis"]["key"] == "A minor"
