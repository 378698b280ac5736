"""Distributed ingest on a real (local, 2-CPU) Ray: ray_embed shards + import_shards must give the
collection that the single-machine `indexer ingest` gives for the same files."""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from indexer import cli
from indexer.errors import ModelMismatchError
from indexer.ingest.distributed import ray_embed
from indexer.ingest.pipeline import IngestOptions, run_ingest
from indexer.ingest.shards import import_shards, read_shard_manifest
from indexer.settings import IndexerSettings
from indexer.store.catalog import SegmentSpec, list_collections
from indexer.store.schema import File, FileVector, Segment, SegmentVector
from indexer.store.store import Store
from tests.indexer import library

pytest.importorskip("ray")
pytest.importorskip("fsspec")

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
SEGMENTS = SegmentSpec(10.0, 5.0)
# what a file row holds beside its vector, compared between single-machine and sharded ingest
COLUMNS = (
    "size mtime_ns content_hash duration_s format subtype sample_rate channels tags status error_code n_segments"
).split()


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 << 20)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lib")
    library.write(root / "a.wav", 2.0, sr=44_100, channels=2, freq=330.0, seed=1)
    library.write(root / "sub" / "b.flac", 3.0, sr=16_000, freq=550.0, seed=2)
    library.write(root / "c.ogg", 1.5, sr=48_000, freq=770.0, seed=3)
    library.write(root / "long.wav", 23.0, sr=16_000, freq=220.0, seed=4)
    (root / "corrupt.wav").write_bytes(np.random.default_rng(5).bytes(5000))
    with zipfile.ZipFile(root.parent / "archive.zip", "w") as archive:
        archive.write(root / "sub" / "b.flac", "inner/b.flac")
    return root


@pytest.fixture(scope="module")
def built(ray_session, lib, tiny_model_dir, tmp_path_factory):
    """One store: collection "single" by run_ingest, collection "ray" by ray_embed + import_shards."""
    home = tmp_path_factory.mktemp("home")
    store = Store.open(IndexerSettings(home=home), model=tiny_model_dir)
    single = run_ingest(store, IngestOptions(paths=[str(lib)], collection="single", segments=SEGMENTS, workers=2))
    shards = home / "shards"
    summary = ray_embed([str(lib)], tiny_model_dir, shards, segments=SEGMENTS, num_actors=2, batch_size=4)
    imported = import_shards(store, "ray", shards)
    yield {"store": store, "home": home, "single": single, "shards": shards, "summary": summary, "imported": imported}
    store.close()


@dataclass
class Stored:
    """A file or segment row with its vector (from file_vectors / segment_vectors; None if it has none)."""

    row: File | Segment
    vector: bytes | None

    def __getattr__(self, name: str):
        return getattr(self.row, name)


def _rows(store: Store, name: str) -> dict[str, tuple[Stored, list[Stored]]]:
    cid = store.collection(name).id
    with store.db.session() as s:
        files = s.scalars(select(File).where(File.collection_id == cid)).all()
        segs = s.scalars(select(Segment).where(Segment.collection_id == cid).order_by(Segment.start_s)).all()
        file_vectors = dict(s.execute(select(FileVector.file_id, FileVector.vector)).tuples().all())
        segment_vectors = dict(s.execute(select(SegmentVector.segment_id, SegmentVector.vector)).tuples().all())
    by_file: dict[int, list[Stored]] = {}
    for seg in segs:
        by_file.setdefault(seg.file_id, []).append(Stored(seg, segment_vectors.get(seg.id)))
    return {f.path: (Stored(f, file_vectors.get(f.id)), by_file.get(f.id, [])) for f in files}


def _vec(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, "<f4")


def test_shards_match_single_machine_ingest(built, lib):
    single, ray_rows = _rows(built["store"], "single"), _rows(built["store"], "ray")
    assert set(ray_rows) == set(single) and len(single) == 5
    for path, (want, want_segs) in single.items():
        got, got_segs = ray_rows[path]
        for column in COLUMNS:
            assert getattr(got, column) == getattr(want, column), (path, column)
        if want.vector is None:
            assert got.vector is None
        else:
            np.testing.assert_allclose(_vec(got.vector), _vec(want.vector), atol=1e-5)
        assert [(s.start_s, s.end_s) for s in got_segs] == [(s.start_s, s.end_s) for s in want_segs]
        for a, b in zip(got_segs, want_segs):
            np.testing.assert_allclose(_vec(a.vector), _vec(b.vector), atol=1e-5)
    long_file = single[str(lib / "long.wav")]
    assert long_file[0].n_segments == 4 and len(long_file[1]) == 4  # 0-10, 5-15, 10-20, 13-23 s
    assert (built["summary"]["files"], built["summary"]["failed"], built["summary"]["missing"]) == (5, 1, 0)
    published = {r.kind: r.version.n_vectors for r in built["imported"]["published"]}
    assert published == {"files": 4, "segments": 4}


def test_corrupt_file_is_a_failed_row_with_its_code(built, lib):
    want, _ = _rows(built["store"], "single")[str(lib / "corrupt.wav")]
    got, _ = _rows(built["store"], "ray")[str(lib / "corrupt.wav")]
    assert got.status == "failed" and got.error_code == want.error_code and got.error_code.startswith("audio.")
    assert got.error == want.error and got.vector is None
    assert [p for p, code, _ in built["single"].failures] == [str(lib / "corrupt.wav")]


def test_reimport_duplicates_nothing(built):
    store = built["store"]

    def counts():
        cid = store.collection("ray").id
        with store.db.session() as s:
            return (
                s.scalar(select(func.count()).select_from(File).where(File.collection_id == cid)),
                s.scalar(select(func.count()).select_from(Segment).where(Segment.collection_id == cid)),
            )

    before = counts()
    again = import_shards(store, "ray", built["shards"], batch=2)  # several transactions
    assert counts() == before == (5, 4)
    assert {r.kind: r.version.n_vectors for r in again["published"]} == {"files": 4, "segments": 4}
    # the CLI route: same rows into another collection, exit 1 because one file failed
    code = cli.main(
        [
            "import-shards",
            str(built["shards"]),
            "-c",
            "cli",
            "--home",
            str(built["home"]),
            "--model",
            str(store.model_dir),
        ]
    )
    assert code == 1 and len(_rows(store, "cli")) == 5


def test_shards_of_another_model_are_refused(built, tiny_model_dir, tmp_path):
    other = tmp_path / "other-shards"
    shutil.copytree(built["shards"], other)
    manifest = read_shard_manifest(other)
    assert manifest["model"]["fingerprint"] == built["store"].manifest.fingerprint
    manifest["model"] |= {"name": "someone-else", "fingerprint": "0123456789abcdef"}
    (other / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelMismatchError):
        import_shards(built["store"], "other", other)
    with pytest.raises(ModelMismatchError):  # nor are new shards added beside them
        ray_embed([str(tmp_path)], tiny_model_dir, other)
    assert "other" not in [c.name for c in list_collections(built["store"].db)]


def test_fsspec_url_sources(built, lib, tiny_model_dir, tmp_path):
    listing = tmp_path / "files.txt"
    listing.write_text(f"# one URL per line\nfile://{lib / 'c.ogg'}\n")
    sources = [
        f"file://{lib}/*.wav",  # glob over a file:// URL
        f"zip://inner/*.flac::file://{lib.parent / 'archive.zip'}",  # remote-style: copied locally
        str(listing),
    ]
    summary = ray_embed(sources, tiny_model_dir, tmp_path / "shards", num_actors=1)
    assert (summary["files"], summary["failed"]) == (5, 1)
    import_shards(built["store"], "urls", tmp_path / "shards")
    urls, single = _rows(built["store"], "urls"), _rows(built["store"], "single")
    zipped = f"zip://inner/b.flac::file://{lib.parent / 'archive.zip'}"
    assert set(urls) == {str(lib / n) for n in ("a.wav", "long.wav", "corrupt.wav", "c.ogg")} | {zipped}
    got, want = urls[zipped][0], single[str(lib / "sub" / "b.flac")][0]
    assert got.content_hash == want.content_hash and got.size == want.size and got.mtime_ns > 0
    np.testing.assert_allclose(_vec(got.vector), _vec(want.vector), atol=1e-5)
    for name in ("a.wav", "c.ogg"):
        np.testing.assert_allclose(
            _vec(urls[str(lib / name)][0].vector), _vec(single[str(lib / name)][0].vector), atol=1e-5
        )


def test_memory_urls_and_a_remote_model_in_process(built, lib):
    """The remote-file path without Ray processes (memory:// lives in this process only): expanding
    URLs, copying files to local temp files, fetching the model folder from a URL, writing shards to
    a URL and importing them from it."""
    import fsspec
    import pyarrow as pa

    from indexer.audio.decode import DecodeLimits
    from indexer.ingest.discover import expand_sources
    from indexer.ingest.distributed import ShardEmbedder, model_folder
    from indexer.ingest.shards import shard_manifest

    store, fs = built["store"], fsspec.filesystem("memory")
    for name in ("a.wav", "corrupt.wav", "sub/b.flac"):
        fs.pipe(f"/dist-test/lib/{name}", (lib / name).read_bytes())
    fs.pipe("/dist-test/lib/sub/notes.txt", b"not audio")
    for f in store.model_dir.rglob("*"):
        if f.is_file():
            fs.pipe(f"/dist-test/model/{f.relative_to(store.model_dir)}", f.read_bytes())
    cached = None
    try:
        urls = expand_sources(["memory://dist-test/lib/**.wav", "memory://dist-test/lib/sub"])
        assert urls == [f"memory:///dist-test/lib/{n}" for n in ("a.wav", "corrupt.wav", "sub/b.flac")]
        fs.pipe(
            "/dist-test/shards/_manifest.json", json.dumps(shard_manifest(store.manifest, store.variant, None)).encode()
        )
        embedder = ShardEmbedder(
            "memory://dist-test/model",
            store.variant,
            "cpu",
            2,
            None,
            DecodeLimits(),
            4,
            "memory://dist-test/shards",
            store.manifest.fingerprint,
        )
        cached = model_folder("memory://dist-test/model")  # the copy the embedder opened
        assert (cached / "manifest.json").is_file() and cached != store.model_dir
        assert embedder(pa.table({"url": urls})).column("failed").to_pylist() == [1]
        assert import_shards(store, "memory", "memory://dist-test/shards")["files"] == 3
        rows, single = _rows(store, "memory"), _rows(store, "single")
        got, want = rows["memory:///dist-test/lib/sub/b.flac"][0], single[str(lib / "sub" / "b.flac")][0]
        assert got.content_hash == want.content_hash and got.duration_s == want.duration_s and got.mtime_ns > 0
        np.testing.assert_allclose(_vec(got.vector), _vec(want.vector), atol=1e-5)
        bad = rows["memory:///dist-test/lib/corrupt.wav"][0]
        assert bad.error_code == single[str(lib / "corrupt.wav")][0].error_code
        assert "clapsearch-ray-" not in bad.error  # names the URL, not the temp copy
    finally:
        fs.rm("/dist-test", recursive=True)
        if cached is not None:
            shutil.rmtree(cached, ignore_errors=True)
