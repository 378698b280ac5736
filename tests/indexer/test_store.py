"""The metadata database and the index versions: migrations, SQLite and PostgreSQL, the model
guard, transactional writes, atomic publish under concurrent readers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import sqlalchemy as sa

from indexer.errors import CollectionBusyError, CollectionNotFoundError, ModelMismatchError
from indexer.models.defaults import shipped_model_dir
from indexer.models.manifest import load_manifest
from indexer.store import catalog, vector_rows, versions
from indexer.store.catalog import FileRecord, SegmentSpec
from indexer.store.db import open_database
from indexer.store.publish import publish_index
from indexer.store.schema import Base, is_fulltext_object
from indexer.store.vector_index import VectorIndex

DIM = load_manifest(shipped_model_dir()).embed_dim  # the store tests' rows match the default model


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(shipped_model_dir())


def drop_all(url: str) -> None:
    """The store's tables dropped from the test database, so that a PostgreSQL store test starts empty."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = ("file_vectors", "segment_vectors", "file_analyses", "segments", "index_versions", "files")
        for table in (*tables, "collections", "alembic_version"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        drop_all(url)
    database = open_database(url)
    yield database
    database.close()
    if request.param == "postgresql":
        drop_all(url)


def _unit(rng, n=1):
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _records(rng, names, *, segments=0):
    out = []
    for name in names:
        segs = [(5.0 * j, 5.0 * j + 10, _unit(rng)[0]) for j in range(segments)] or None
        out.append(
            FileRecord(
                f"/lib/{name}.wav",
                100,
                1,
                content_hash="h" + name,
                duration_s=2.0,
                format="WAV",
                tags={"title": name},
                vector=_unit(rng)[0],
                segments=segs,
            )
        )
    return out


def test_migrations_create_exactly_the_models_schema(db):
    """alembic's autogenerate finds no difference between the migrated database and the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def include_name(name, type_, parent_names) -> bool:  # what migrations/env.py leaves out too
        return not is_fulltext_object(name)

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"include_name": include_name}), Base.metadata)
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        inspector = sa.inspect(conn)
        if db.dialect == "sqlite":  # the left-out objects exist: the filter hides no missing index
            assert "files_fts" in inspector.get_table_names()
        else:
            assert "ix_files_words_fts" in {i["name"] for i in inspector.get_indexes("files")}
    assert diff == []
    assert version == "0004"


def test_rows_vectors_and_segments_round_trip(db, manifest):
    rng = np.random.default_rng(0)
    col = catalog.open_collection(db, "lib", manifest, "fp32", SegmentSpec(10, 5))
    records = _records(rng, ["a", "b", "c"], segments=3)
    records.append(FileRecord("/lib/bad.wav", 5, 1, error_code="audio.decode", error="not audio"))
    catalog.write_files(db, col.id, records)
    known = catalog.known_files(db, col.id, ["/lib/a.wav", "/lib/bad.wav", "/lib/missing.wav"])
    assert set(known) == {"/lib/a.wav", "/lib/bad.wav"} and known["/lib/bad.wav"].status == "failed"
    assert vector_rows.count_vectors(db, col.id, "files") == 3
    assert vector_rows.count_vectors(db, col.id, "segments") == 9
    ids, vectors = next(vector_rows.iter_vectors(db, col.id, "files"))
    np.testing.assert_array_equal(vectors, np.stack([r.vector for r in records[:3]]))
    # Rewriting a file keeps its id, replaces its vector and segments, and bumps the generation.
    before = catalog.get_collection(db, "lib").generation
    changed = _records(rng, ["a"], segments=1)
    catalog.write_files(db, col.id, changed)
    assert catalog.known_files(db, col.id, ["/lib/a.wav"])["/lib/a.wav"].id == known["/lib/a.wav"].id
    assert vector_rows.count_vectors(db, col.id, "segments") == 7
    assert vector_rows.ids_written_after(db, col.id, "files", before).tolist() == [known["/lib/a.wav"].id]
    # the rewritten file's new segment carries the new generation too (incremental publish finds it)
    (new_segment,) = vector_rows.ids_written_after(db, col.id, "segments", before).tolist()
    assert new_segment in vector_rows.live_ids(db, col.id, "segments").tolist()
    _, (new_a,) = next(vector_rows.iter_vectors(db, col.id, "files", ids=np.array([known["/lib/a.wav"].id])))
    np.testing.assert_array_equal(new_a, changed[0].vector)
    assert _vector_rows(db) == (3, 7)  # the old vectors went with the old rows; the failed file has none
    # Removing a folder's files takes their segments and every vector along.
    gone = catalog.file_ids_under(db, col.id, ["/lib"])
    assert catalog.remove_files(db, col.id, gone) == 4
    assert vector_rows.count_vectors(db, col.id, "segments") == 0
    assert _vector_rows(db) == (0, 0)


TABLES = ("file_vectors", "segment_vectors")


def _vector_rows(db) -> tuple:
    with db.engine.connect() as conn:
        return tuple(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES)


def _all_vectors(db, collection_id: int, kind: str) -> list:
    return [(ids.tolist(), v.tolist()) for ids, v in vector_rows.iter_vectors(db, collection_id, kind)]


def _alembic(db, step: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from indexer.store.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, step)(config, revision)


def test_migration_0004_moves_the_vectors_out_of_the_rows_and_back(db, manifest):
    """Upgrading a 0003 database copies every vector into the vector tables; a downgrade copies
    them back. The rows, their ids and the full-text index survive both ways."""
    rng = np.random.default_rng(3)
    col = catalog.open_collection(db, "lib", manifest, "fp32", SegmentSpec(10, 5))
    records = _records(rng, ["kick drum", "rain"], segments=2)
    records.append(FileRecord("/lib/bad.wav", 5, 1, error_code="audio.decode", error="not audio"))
    catalog.write_files(db, col.id, records)
    before = {k: _all_vectors(db, col.id, k) for k in ("files", "segments")}
    _alembic(db, "downgrade", "0003")
    with db.engine.connect() as conn:
        old = conn.execute(sa.text("SELECT path, vector FROM files ORDER BY id")).all()
        assert [p for p, v in old if v is None] == ["/lib/bad.wav"]
        assert conn.execute(sa.text("SELECT count(*) FROM segments WHERE vector IS NOT NULL")).scalar() == 4
        assert not set(TABLES) & set(sa.inspect(conn).get_table_names())
    np.testing.assert_array_equal(np.frombuffer(old[0][1], "<f4"), records[0].vector)
    _alembic(db, "upgrade", "head")
    assert _vector_rows(db) == (2, 4)
    assert {k: _all_vectors(db, col.id, k) for k in before} == before
    from indexer import fulltext

    rain = catalog.known_files(db, col.id, ["/lib/rain.wav"])["/lib/rain.wav"].id
    assert [i for i, _ in fulltext.text_ranking(db, col.id, "rain", 10)] == [rain]


def test_a_write_batch_is_all_or_nothing(db, manifest):
    rng = np.random.default_rng(1)
    col = catalog.open_collection(db, "lib", manifest, "fp32")
    records = _records(rng, ["a", "b"])
    records[1].vector = "not a vector"  # fails while the transaction is open
    with pytest.raises(Exception):  # noqa: B017  (whatever the driver raises: the rollback is the point)
        catalog.write_files(db, col.id, records)
    assert catalog.known_files(db, col.id, ["/lib/a.wav", "/lib/b.wav"]) == {}


def test_a_collection_refuses_another_models_vectors(db, manifest):
    catalog.open_collection(db, "lib", manifest, "fp32")
    other = manifest.model_copy(update={"name": "another-model"})
    with pytest.raises(ModelMismatchError, match="indexer rebuild"):
        catalog.open_collection(db, "lib", other, "fp32")
    with pytest.raises(CollectionNotFoundError):
        catalog.get_collection(db, "nope")


def test_publish_is_incremental_and_a_version_names_its_model(db, manifest, tmp_path):
    rng = np.random.default_rng(2)
    col = catalog.open_collection(db, "lib", manifest, "fp32")
    catalog.write_files(db, col.id, _records(rng, [f"f{i}" for i in range(20)]))
    first = publish_index(db, catalog.get_collection(db, "lib"), tmp_path, "files")
    assert first.mode == "first" and first.version.n_vectors == 20
    assert publish_index(db, catalog.get_collection(db, "lib"), tmp_path, "files").mode == "unchanged"
    catalog.write_files(db, col.id, _records(rng, ["f0", "new"]))  # one changed, one new
    catalog.remove_files(db, col.id, [catalog.known_files(db, col.id, ["/lib/f1.wav"])["/lib/f1.wav"].id])
    second = publish_index(db, catalog.get_collection(db, "lib"), tmp_path, "files")
    assert second.mode == "incremental" and second.version.n_vectors == 20
    index = VectorIndex.load(second.version.folder)
    np.testing.assert_array_equal(index.ids(), vector_rows.live_ids(db, col.id, "files"))
    # The changed file's NEW vector is what the index returns.
    fid = catalog.known_files(db, col.id, ["/lib/f0.wav"])["/lib/f0.wav"].id
    _, vec = next(vector_rows.iter_vectors(db, col.id, "files", ids=np.array([fid])))
    scores, ids = index.search(vec, 1)
    assert ids[0, 0] == fid and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    live = versions.current_version(tmp_path, "lib", "files")
    assert live.version == 2 and live.model_fingerprint == manifest.fingerprint
    with pytest.raises(ModelMismatchError):
        live.check_model("0" * 16, "another-model")


def test_readers_never_see_a_half_published_index(tmp_path):
    """Readers resolve CURRENT and load while versions are published and pruned beside them."""
    rng = np.random.default_rng(3)
    vectors = _unit(rng, 3000)
    stop = threading.Event()
    seen, errors = [], []

    def reader():
        while not stop.is_set():
            try:
                live = versions.current_version(tmp_path, "lib", "files")
                if live is None:
                    continue
                index = VectorIndex.load(live.folder)
                assert index.ntotal == live.n_vectors, (index.ntotal, live.n_vectors)
                seen.append(live.version)
            except FileNotFoundError as exc:  # pruned after we resolved it: allowed, retry
                if "CURRENT" in str(exc):
                    errors.append(exc)
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for step in range(1, 13):
            n = 250 * step
            index = VectorIndex.empty(DIM)
            index.add(np.arange(n, dtype=np.int64), vectors[:n])
            tmp, number = versions.new_version_folder(tmp_path, "lib", "files")
            index.save(tmp)
            versions.publish_folder(
                tmp,
                collection="lib",
                collection_id=1,
                kind="files",
                version=number,
                generation=step,
                model_name="m",
                model_fingerprint="f",
                n_vectors=n,
            )
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert len(set(seen)) > 3  # the readers really raced the publisher
    kept = sorted(p.name for p in (tmp_path / "lib" / "files").iterdir())
    assert kept == ["CURRENT", "v000011", "v000012"]


def test_a_crashed_publish_leaves_the_live_version_and_is_swept(tmp_path):
    index = VectorIndex.empty(DIM)
    tmp, number = versions.new_version_folder(tmp_path, "lib", "files")
    index.save(tmp)
    versions.publish_folder(
        tmp,
        collection="lib",
        collection_id=1,
        kind="files",
        version=number,
        generation=1,
        model_name="m",
        model_fingerprint="f",
        n_vectors=0,
    )
    crashed, _ = versions.new_version_folder(tmp_path, "lib", "files")  # killed mid-write
    (crashed / "index.faiss").write_bytes(b"half")
    assert versions.current_version(tmp_path, "lib", "files").version == 1
    fresh, number = versions.new_version_folder(tmp_path, "lib", "files")
    assert number == 2 and not (crashed / "index.faiss").exists()  # the leftover was swept
    assert [p.name for p in (tmp_path / "lib" / "files").iterdir() if p.name.startswith(".")] == [fresh.name]


def test_one_writer_per_collection(tmp_path):
    with versions.collection_lock(tmp_path, "lib"):
        with pytest.raises(CollectionBusyError):
            with versions.collection_lock(tmp_path, "lib"):
                pass
    with versions.collection_lock(tmp_path, "lib"):  # released
        pass
