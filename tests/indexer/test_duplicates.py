"""The near-duplicate finder (indexer/duplicates.py) and ``indexer duplicates``: FAISS range
search agrees with brute force, variants of one recording group together and distinct ones do
not, the threshold is respected, the cache answers a second call and follows an ingest, and bad
input is a clear error (exit 2, ``error [code]``)."""

from __future__ import annotations

import json
import shutil
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from indexer.duplicates import (
    DEFAULT_THRESHOLD,
    brute_force_pairs,
    cache_path,
    check_threshold,
    find_duplicates,
    group_pairs,
    range_pairs,
)
from indexer.errors import CollectionNotFoundError, QueryError
from tests.dup_library import (
    DISTINCT,
    GROUPS,
    LATE_VARIANT,
    MODEL,
    ingest,
    ingested_library,
    open_store,
    write_late_variant,
)

# ----------------------------------------------------------------------------- no model


def test_range_search_finds_exactly_the_brute_force_pairs():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((300, 64)).astype(np.float32)
    near = base[:40] + 0.05 * rng.standard_normal((40, 64)).astype(np.float32)  # 40 near-copies
    x = np.concatenate([base, near])
    ids = np.arange(1000, 1000 + len(x), dtype=np.int64)
    for threshold in (0.9, 0.99, 0.999):
        assert range_pairs(ids, x, ids, x, threshold).keys() == brute_force_pairs(ids, x, threshold).keys()
    found = range_pairs(ids, x, ids, x, 0.9)
    assert {(1000 + i, 1300 + i) for i in range(40)} <= found.keys()
    assert all(s >= 0.9 for s in found.values())


def test_inverted_file_range_search_finds_the_planted_near_duplicates():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((60, 64)).astype(np.float32)
    x = centres[rng.integers(0, 60, 3000)] + 0.5 * rng.standard_normal((3000, 64)).astype(np.float32)
    x[2900:] = x[:100] + 0.02 * rng.standard_normal((100, 64)).astype(np.float32)
    ids = np.arange(3000, dtype=np.int64)
    approx = range_pairs(ids, x, ids, x, 0.97, exact=False)
    exact = range_pairs(ids, x, ids, x, 0.97, exact=True)
    assert approx.keys() <= exact.keys()  # never a pair below the threshold
    assert {(i, 2900 + i) for i in range(100)} <= approx.keys()
    assert len(approx) >= 0.95 * len(exact)


def test_union_find_groups_chains_and_keeps_components_apart():
    assert group_pairs([(1, 2), (2, 3), (10, 11), (5, 3)]) == [[1, 2, 3, 5], [10, 11]]
    assert group_pairs([]) == []


@pytest.mark.parametrize("bad", [0, -0.5, 1.01, 7, float("nan"), "x", None])
def test_threshold_outside_zero_one_is_refused(bad):
    with pytest.raises(QueryError, match=r"threshold"):
        check_threshold(bad)
    assert check_threshold(1) == 1.0 and check_threshold(DEFAULT_THRESHOLD) == DEFAULT_THRESHOLD


# ----------------------------------------------------------------------------- a real library


@pytest.fixture(scope="module")
def dup_home(tmp_path_factory) -> tuple[Path, Path]:
    return ingested_library(tmp_path_factory)


@pytest.fixture
def home(dup_home, tmp_path) -> tuple[Path, Path]:
    root, shared = dup_home
    target = tmp_path / "home"
    shutil.copytree(shared, target, symlinks=True)
    (target / "indexes" / "default" / "duplicates.json").unlink(missing_ok=True)  # other tests' cache
    return root, target


def _names(report) -> list[set[str]]:
    return [{Path(m.path).name for m in g.members} for g in report.groups]


def test_variants_group_together_and_distinct_recordings_do_not(dup_home):
    _, home = dup_home
    with closing(open_store(home)) as store:
        report = find_duplicates(store, threshold=0.9, use_cache=False)
    assert _names(report) == [set(GROUPS["applause"])]
    group = report.groups[0]
    assert all(0.9 <= p.score <= 1.0 for p in group.pairs) and group.score_min >= 0.9
    assert "vector similarity" in group.reason and "different formats" in group.reason
    assert {"format", "duration"} <= set(group.differences)
    assert report.mode == "full" and report.n_files == len(DISTINCT) + 4


def test_threshold_is_respected(dup_home):
    _, home = dup_home
    with closing(open_store(home)) as store:
        loose = find_duplicates(store, threshold=0.9, use_cache=False)
        strict = find_duplicates(store, threshold=0.999, use_cache=False)
        everything = find_duplicates(store, threshold=1e-6, use_cache=False, min_group=3)
    scores = [p.score for p in loose.groups[0].pairs]
    # a gain change of the same samples is the same vector; re-encodes, trims and mix-downs are not
    assert _names(strict) == [{"applause.wav", "applause_quiet.flac"}]
    assert all(p.score >= 0.999 for g in strict.groups for p in g.pairs)
    assert len(scores) >= 3 and min(scores) < 0.999
    assert all(len(g.members) >= 3 for g in everything.groups)


def test_second_call_is_cached_and_an_ingest_updates_it_incrementally(home):
    root, home = home
    with closing(open_store(home)) as store:
        first = find_duplicates(store, threshold=0.9)
        again = find_duplicates(store, threshold=0.9)
        higher = find_duplicates(store, threshold=0.999)  # served by the cache found at 0.9
    assert first.mode == "full" and again.mode == "cached" and higher.mode == "cached"
    assert _names(again) == _names(first) and again.searched == 0
    assert _names(higher) == [{"applause.wav", "applause_quiet.flac"}]
    cached = json.loads(cache_path(open_store(home), "default").read_text())
    assert cached["threshold"] == 0.9 and cached["generation"] == first.generation

    ingest(home, [write_late_variant(root)])
    with closing(open_store(home)) as store:
        after = find_duplicates(store, threshold=0.9)
        full = find_duplicates(store, threshold=0.9, use_cache=False)
    assert after.mode == "incremental" and after.searched == 1 and after.generation > first.generation
    assert _names(after) == [set(GROUPS["applause"]) | {LATE_VARIANT}] == _names(full)
    assert after.n_pairs == full.n_pairs


def test_removed_file_leaves_its_group(home):
    from indexer.cli import main

    root, home = home
    with closing(open_store(home)) as store:
        find_duplicates(store, threshold=0.9)
    assert main(["remove", "--home", str(home), "--model", str(MODEL), str(root / "applause_mono.ogg")]) == 0
    with closing(open_store(home)) as store:
        after = find_duplicates(store, threshold=0.9)
    assert after.mode == "incremental"
    assert _names(after) == [set(GROUPS["applause"]) - {"applause_mono.ogg"}]


def test_unknown_and_empty_collections(dup_home, tmp_path, capsys):
    _, home = dup_home
    with closing(open_store(home)) as store:
        with pytest.raises(CollectionNotFoundError):
            find_duplicates(store, "nope")
        with pytest.raises(QueryError, match="min_group"):
            find_duplicates(store, min_group=1)
    empty_lib = tmp_path / "empty"
    empty_lib.mkdir()
    (empty_lib / "bad.wav").write_bytes(b"not audio at all" * 100)
    ingest(tmp_path / "h2", [empty_lib])  # the collection exists, with no vector in it
    with closing(open_store(tmp_path / "h2")) as store:
        report = find_duplicates(store)
    assert report.groups == [] and report.n_files == 0
    from indexer.cli import main

    assert main(["duplicates", "--home", str(tmp_path / "h2"), "--model", str(MODEL)]) == 0
    assert "no indexed files yet" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the CLI


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from indexer.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_prints_groups_and_json(dup_home, capsys):
    _, home = dup_home
    common = ["--home", str(home), "--model", str(MODEL)]
    code, out, err = _cli(capsys, "duplicates", *common, "--threshold", "0.9")
    assert code == 0, err
    assert out.startswith("group 1: 4 files, vector similarity")
    for name in GROUPS["applause"]:
        assert name in out
    assert "1 group (4 of 8 files) at similarity >= 0.9" in err
    code, out, err = _cli(capsys, "duplicates", *common, "--threshold", "0.9", "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["total"] == 1 and body["offset"] == 0 and body["threshold"] == 0.9
    assert {Path(m["path"]).name for m in body["items"][0]["members"]} == set(GROUPS["applause"])
    assert {"a", "b", "score"} == set(body["items"][0]["pairs"][0])


@pytest.mark.parametrize(
    "args, code_text",
    [
        (["--threshold", "0"], "error [request.invalid]: threshold"),
        (["--threshold", "1.5"], "error [request.invalid]: threshold"),
        (["-c", "nope"], "error [store.collection_not_found]"),
        (["--min-group", "1"], "error [request.invalid]: min_group"),
    ],
)
def test_cli_bad_input_is_exit_2_with_the_code(dup_home, capsys, args, code_text):
    _, home = dup_home
    code, out, err = _cli(capsys, "duplicates", "--home", str(home), "--model", str(MODEL), *args)
    assert code == 2 and code_text in err and "Traceback" not in err and out == ""
