"""The words index (indexer/fulltext.py) on SQLite FTS5 and PostgreSQL full-text search: what
a file's words are, that the index follows every insert, rewrite and delete, that migrating an
older database fills it, the ranking, hostile query text, and the fusion rule."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from indexer.fulltext import fuse, query_words, split_words, text_ranking, words_for
from indexer.models.defaults import shipped_model_dir
from indexer.models.manifest import load_manifest
from indexer.store import catalog, vector_rows
from indexer.store.catalog import FileRecord
from indexer.store.db import make_engine, open_database, upgrade
from tests.indexer.test_store import drop_all

DIM = load_manifest(shipped_model_dir()).embed_dim


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(shipped_model_dir())


def _url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("postgres_url")
    drop_all(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    url = _url(request, tmp_path)
    database = open_database(url)
    yield database
    database.close()
    if request.param == "postgresql":
        drop_all(url)


def _record(path: str, tags: dict | None = None, *, failed: bool = False) -> FileRecord:
    if failed:
        return FileRecord(path, 10, 1, error_code="audio.decode", error="not audio")
    v = np.random.default_rng(abs(hash(path)) % 2**32).standard_normal(DIM).astype(np.float32)
    return FileRecord(path, 10, 1, duration_s=1.0, format="WAV", tags=tags, vector=v / np.linalg.norm(v))


def _found(db, collection_id: int, text: str, depth: int = 50) -> list[str]:
    ids = [i for i, _ in text_ranking(db, collection_id, text, depth)]
    with db.session() as s:
        paths = dict(s.execute(sa.text("SELECT id, path FROM files")).all())
    return [paths[i].rsplit("/", 1)[-1] for i in ids]


# ----------------------------------------------------------------------------- words


def test_names_split_into_the_words_a_user_types():
    assert split_words("dog_bark_close-02.wav") == ["dog", "bark", "close", "02", "wav"]
    assert split_words("DogBarkClose.flac") == ["dog", "bark", "close", "flac"]
    assert split_words("HTTPServerNoise2") == ["http", "server", "noise", "2"]
    assert split_words("Café au lait") == ["café", "au", "lait"]
    assert words_for("/srv/home/lib/Animals/Dogs/dog_bark_close-02.wav", {"title": "Big dog", "genre": "ambient"}) == (
        "dog bark close lib animals dogs big dog ambient"  # 3 folders up; the extension and numbers left out
    )
    assert words_for("DogBarkClose.flac", None) == "dog bark close"
    assert words_for("s3://bucket/sfx/rain.ogg", None) == "rain bucket sfx"
    assert query_words("a dog barking in the rain!") == ["dog", "barking", "rain"]
    assert query_words("the sound of a ... 42") == []


# ----------------------------------------------------------------------------- the index


def test_the_index_follows_inserts_rewrites_and_deletes(db, manifest):
    col = catalog.open_collection(db, "lib", manifest, "fp32")
    other = catalog.open_collection(db, "other", manifest, "fp32")
    catalog.write_files(
        db,
        col.id,
        [
            _record("/lib/animals/dog_bark_close-02.wav"),
            _record("/lib/animals/DogGrowl.flac"),
            _record("/lib/weather/storm.wav", {"title": "Thunder and heavy rain", "genre": "ambient"}),
            _record("/lib/broken/dog_broken.wav", failed=True),
        ],
    )
    catalog.write_files(db, other.id, [_record("/other/dog_whine.wav")])
    assert sorted(_found(db, col.id, "dog")) == ["DogGrowl.flac", "dog_bark_close-02.wav"]  # failed + other left out
    assert _found(db, col.id, "dogs barking") == ["dog_bark_close-02.wav", "DogGrowl.flac"]  # stemmed; both words first
    assert _found(db, col.id, "rain") == ["storm.wav"]  # embedded title
    assert _found(db, col.id, "genre:ambient") == ["storm.wav"]  # tag written as a filter
    assert _found(db, col.id, "weather") == ["storm.wav"]  # folder name
    assert _found(db, col.id, "helicopter") == []
    # A rewritten file is found by its new words only.
    catalog.write_files(db, col.id, [_record("/lib/weather/storm.wav", {"title": "Wind gusts"})])
    assert _found(db, col.id, "rain") == [] and _found(db, col.id, "wind") == ["storm.wav"]
    # Removed files leave the index, and so do a deleted collection's (ON DELETE CASCADE).
    gone = catalog.file_ids_under(db, col.id, ["/lib/animals"])
    catalog.remove_files(db, col.id, gone)
    assert _found(db, col.id, "dog") == []
    catalog.delete_collection(db, "other")
    assert _found(db, other.id, "dog") == []
    if db.dialect == "sqlite":  # the FTS table holds exactly the live rows, nothing stale
        with db.session() as s:
            s.execute(sa.text("INSERT INTO files_fts(files_fts, rank) VALUES ('integrity-check', 1)"))
            for gone_word in ("growl", "whine", "thunder"):  # removed, cascaded away, rewritten
                count = f"SELECT count(*) FROM files_fts WHERE files_fts MATCH '{gone_word}'"
                assert s.execute(sa.text(count)).scalar() == 0


def test_a_rare_word_outranks_a_word_every_file_has_and_filters_apply(db, manifest):
    col = catalog.open_collection(db, "lib", manifest, "fp32")
    records = [_record(f"/lib/foley/foley_take_{i}.wav") for i in range(30)]
    records.append(_record("/lib/foley/foley_door_slam.wav"))
    records.append(_record("/lib/foley/foley_door_creak.wav"))
    catalog.write_files(db, col.id, records)
    found = _found(db, col.id, "foley door slam")
    assert found[:2] == ["foley_door_slam.wav", "foley_door_creak.wav"] and len(found) == 32
    with db.session() as s:
        creak = s.execute(sa.text("SELECT id FROM files WHERE path LIKE '%creak%'")).scalar_one()
        takes = sorted(s.execute(sa.text("SELECT id FROM files WHERE path LIKE '%take%'")).scalars())
    allowed = np.asarray(sorted([creak, *takes[:3]]), np.int64)
    ranked = text_ranking(db, col.id, "foley door slam", 10, allowed)
    assert [i for i, _ in ranked][0] == creak and {i for i, _ in ranked} == set(allowed.tolist())
    assert text_ranking(db, col.id, "door", 10, np.asarray([], np.int64)) == []


@pytest.mark.parametrize(
    "query",
    ['"', 'dog" OR "*', "NEAR(dog bark)", "dog AND NOT", "a:b:c", "'; DROP TABLE files; --", "!&|()<>:*", "é" * 300],
)
def test_hostile_query_text_is_just_words(db, manifest, query):
    col = catalog.open_collection(db, "lib", manifest, "fp32")
    catalog.write_files(db, col.id, [_record("/lib/dog_bark.wav")])
    ranked = text_ranking(db, col.id, query, 10)
    assert [i for i, _ in ranked] in (
        [],
        [catalog.known_files(db, col.id, ["/lib/dog_bark.wav"])["/lib/dog_bark.wav"].id],
    )
    assert vector_rows.count_vectors(db, col.id, "files") == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    value = _url(request, tmp_path)
    yield value
    if request.param == "postgresql":
        drop_all(value)


def test_migrating_an_older_database_fills_the_index(url):
    """Rows written before the words index existed are found once the migration ran."""
    engine = make_engine(url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO collections (name, model_name, model_fingerprint, model_variant, manifest, dim, metric,"
                " generation, created_at, updated_at) VALUES ('old', 'm', 'f', 'fp32', '{}', 4, 'inner_product', 1,"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        collection_id = conn.execute(sa.text("SELECT id FROM collections")).scalar_one()
        for path, tags in (("/old/Ambience/WindHowl.wav", '{"title": "winter storm"}'), ("/old/steps.wav", None)):
            conn.execute(
                sa.text(
                    "INSERT INTO files (collection_id, path, size, mtime_ns, tags, status, n_segments, generation,"
                    " updated_at) VALUES (:c, :p, 1, 1, :t, 'indexed', 0, 1, CURRENT_TIMESTAMP)"
                ),
                {"c": collection_id, "p": path, "t": tags},
            )
    engine.dispose()
    db = open_database(url)  # upgrades to head
    try:
        assert _found(db, collection_id, "wind") == ["WindHowl.wav"]
        assert _found(db, collection_id, "storm ambience") == ["WindHowl.wav"]
        assert _found(db, collection_id, "steps") == ["steps.wav"]
    finally:
        db.close()


# ----------------------------------------------------------------------------- fusion


def test_reciprocal_rank_fusion_rewards_agreement_and_keeps_single_lists_intact():
    cosines = {1: 0.9, 2: 0.8, 3: 0.7, 4: 0.1}
    assert fuse([1, 2, 3], [], cosines) == [1, 2, 3]  # no words matched: the audio ranking as it is
    assert fuse([], [4, 2], cosines) == [4, 2]
    assert fuse([1, 2, 3], [3], cosines)[0] == 3  # on both lists beats the top of one
    assert fuse([1, 2], [2, 1], cosines) == [1, 2]  # a tie goes to the better cosine


# ----------------------------------------------------------------------------- search, end to end


def test_search_modes_on_an_ingested_library(url, tmp_path):
    """`run_search` (what `indexer search` runs) in each mode over a real ingest, on both databases."""
    from indexer.errors import SearchModeError
    from indexer.filters import SearchFilters
    from indexer.ingest.pipeline import IngestOptions, run_ingest
    from indexer.query import SearchRequest, run_search
    from indexer.settings import IndexerSettings
    from indexer.store.store import Store
    from tests.indexer.library import write
    from tests.service.conftest import MODEL

    lib = tmp_path / "lib"
    for n, name in enumerate(
        ["Animals/DogBarkClose.wav", "Animals/cat_meow-02.flac", "Misc/take_1.wav", "Misc/take_2.wav"]
    ):
        write(lib / name, 1.0 + n * 0.5, sr=16_000, freq=300.0 + 400 * n, seed=n)
    store = Store.open(IndexerSettings(home=tmp_path / "home", model=MODEL, database_url=url, index_dir=None))
    try:
        run_ingest(store, IngestOptions(paths=[str(lib)], workers=1))

        def names(q: str, **kw) -> list[str]:
            return [h["name"] for h in run_search(store, SearchRequest("default", **kw), text=q).items]

        def total(q: str, **kw) -> int:
            return run_search(store, SearchRequest("default", **kw), text=q).total

        assert names("dog barking", mode="text") == ["DogBarkClose.wav"]
        assert names("dog barking")[0] == "DogBarkClose.wav"
        assert names("animals", mode="text", filters=SearchFilters(formats=("FLAC",))) == ["cat_meow-02.flac"]
        assert names("zebra crossing") == names("zebra crossing", mode="audio") and names("zebra crossing")
        assert names("zebra crossing", mode="text") == []
        # totals follow the mode: words alone count the files that hold a word, sound counts all
        assert total("animals", mode="text", limit=1) == 2 and total("zebra crossing", mode="text") == 0
        assert total("animals", mode="hybrid", limit=1) == total("animals", mode="audio", limit=1) == 4
        assert total("animals", mode="text", limit=1, min_score=-1.0) == 2
        whole = names("animals take", limit=4)
        assert [n for o in range(4) for n in names("animals take", limit=1, offset=o)] == whole
        with pytest.raises(SearchModeError):
            run_search(store, SearchRequest("default", mode="text", segments=True), text="dog")
        with pytest.raises(SearchModeError):
            run_search(store, SearchRequest("default", mode="loud"), text="dog")
    finally:
        store.close()
