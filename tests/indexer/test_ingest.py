"""`indexer ingest` end to end with the shipped default model: every format, bad files,
incremental re-runs, segments, kill -9 and resume, PostgreSQL, export, check, rebuild."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from indexer import cli
from indexer.errors import ModelMismatchError
from indexer.ingest.pipeline import IngestOptions, run_ingest
from indexer.models.defaults import shipped_model_dir
from indexer.models.encoder import ClapEncoder
from indexer.search import Searcher
from indexer.settings import IndexerSettings
from indexer.store import catalog, vector_rows
from indexer.store.catalog import SegmentSpec
from indexer.store.store import Store
from indexer.store.vector_index import VectorIndex
from tests.helpers import run_captured, stored_vectors, tone, wait_until
from tests.indexer import library

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def encoder():
    return ClapEncoder.open(shipped_model_dir())


def _store(home: Path, **settings) -> Store:
    return Store.open(IndexerSettings(home=home, **settings))


def test_every_format_ingests_and_bad_files_are_recorded_not_fatal(tmp_path, encoder, capsys):
    good = library.good_library(tmp_path / "lib")
    bad = library.bad_files(tmp_path / "lib" / "bad")
    home = tmp_path / "home"
    code = cli.main(["ingest", str(tmp_path / "lib"), "--home", str(home), "-q", "--workers", "2"])
    out = capsys.readouterr()
    assert code == 1  # something failed: exit code says so
    assert f"{len(good)} embedded" in out.out and f"{len(bad)} failed" in out.out
    for path in bad.values():
        assert str(path) in out.err
    store = _store(home)
    vectors = stored_vectors(store)
    assert set(vectors) == {str(p) for p in good}
    # The pipeline (worker processes, batches across files) gives the direct path's vectors.
    direct = {item.path: item.vector for item in encoder.embed_files([str(p) for p in good])}
    for path, vector in vectors.items():
        np.testing.assert_allclose(vector, direct[path], atol=1e-6)
    assert cli.main(["status", "--home", str(home), "--errors", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)[0]
    assert status["files"] == {"indexed": len(good), "failed": len(bad)}
    codes = {Path(e["path"]).name: e["code"] for e in status["errors"]}
    assert codes["garbage.wav"] == "audio.decode" and codes["empty.wav"] == "audio.empty"
    assert status["indexes"]["files"]["vectors"] == len(good)
    # Quick checks from the shell: a file's own audio finds itself first.
    assert cli.main(["search", "--audio", str(good[3]), "--home", str(home), "-k", "3"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(str(good[3]))
    assert cli.main(["search", "a steady tone", "--home", str(home), "--json"]) == 0
    page = json.loads(capsys.readouterr().out)
    hits = page["items"]
    assert len(hits) == min(10, len(good)) and all(-1 <= h["score"] <= 1 for h in hits)
    assert page["total"] == len(good) and (page["limit"], page["offset"]) == (10, 0)


def test_reruns_skip_unchanged_confirm_touched_by_hash_and_follow_edits(tmp_path):
    files = library.good_library(tmp_path / "lib", n_extra=6)
    store = _store(tmp_path / "home")
    options = IngestOptions(paths=[str(tmp_path / "lib")], workers=1)
    first = run_ingest(store, options)
    assert first.stats.embedded == len(files) and first.exit_code == 0
    ids_before = {
        p: k.id
        for p, k in catalog.known_files(store.db, store.collection("default").id, [str(f) for f in files]).items()
    }
    again = run_ingest(store, options)
    assert (again.stats.skipped, again.stats.embedded) == (len(files), 0)
    assert again.published[0].mode == "unchanged"
    touched, edited, deleted = files[-1], files[-2], files[-3]
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 10**9))  # same bytes, new mtime
    library.write(edited, 3.0, sr=16_000, freq=1234.0, seed=99)  # new content
    old_vector = stored_vectors(store)[str(edited)]
    deleted.unlink()
    third = run_ingest(store, IngestOptions(paths=[str(tmp_path / "lib")], workers=1, prune=True))
    assert third.stats.embedded == 1 and third.stats.removed == 1
    assert third.stats.skipped == len(files) - 2  # touched one included
    vectors = stored_vectors(store)
    assert str(deleted) not in vectors and not np.allclose(vectors[str(edited)], old_vector)
    col = store.collection("default")
    assert catalog.known_files(store.db, col.id, [str(edited)])[str(edited)].id == ids_before[str(edited)]
    assert catalog.known_files(store.db, col.id, [str(touched)])[str(touched)].mtime_ns == touched.stat().st_mtime_ns
    index = VectorIndex.load(third.published[0].version.folder)
    np.testing.assert_array_equal(index.ids(), vector_rows.live_ids(store.db, col.id, "files"))
    assert third.published[0].mode == "incremental"


def test_segments_return_the_moment_inside_a_long_file(tmp_path, encoder):
    sr = 16_000
    t = np.arange(40 * sr) / sr
    rng = np.random.default_rng(0)
    # 0-20 s a tone, 20-40 s noise bursts: windows in the second half must not match the tone.
    wave = np.where(
        t < 20, 0.3 * np.sin(2 * np.pi * 660 * t), 0.3 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0)
    )
    import soundfile as sf

    (tmp_path / "lib").mkdir()
    sf.write(tmp_path / "lib" / "long.flac", wave.astype(np.float32), sr)
    library.write(tmp_path / "lib" / "short.wav", 2.0)
    store = _store(tmp_path / "home")
    report = run_ingest(store, IngestOptions(paths=[str(tmp_path / "lib")], segments=SegmentSpec(10, 5), workers=1))
    assert [r.kind for r in report.published] == ["files", "segments"]
    assert report.published[1].version.n_vectors == 7  # 0,5,...,30: 7 windows of 40 s
    searcher = Searcher(store, "default", kind="segments")
    query = encoder.embed_waveforms([wave[25 * sr : 35 * sr].astype(np.float32)], sr)
    top = searcher.search_vectors(query, 3)[0][0]
    assert (top.start_s, top.end_s) == (25.0, 35.0) and top.path.endswith("long.flac")
    assert top.score == pytest.approx(1.0, abs=1e-4)


def _db_count(db_path: Path) -> int:
    try:
        with sqlite3.connect(db_path, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM files").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_kill_minus_9_mid_ingest_then_resume_loses_and_duplicates_nothing(tmp_path):
    files = library.good_library(tmp_path / "lib", n_extra=40)
    home = tmp_path / "home"
    command = [sys.executable, "-m", "indexer.cli.run", "ingest", str(tmp_path / "lib"), "--home", str(home)]
    command += "-q --workers 1 --commit-every 3".split()
    proc = subprocess.Popen(
        command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wait_until(lambda: _db_count(home / "clapsearch.db") >= 6 or proc.poll() is not None, 120, every_s=0.05)
    assert proc.poll() is None, "ingest finished before it could be killed: make the library bigger"
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its decode workers
    proc.wait()
    partial = _db_count(home / "clapsearch.db")
    assert 0 < partial < len(files)
    resumed = run_captured(command, cwd=REPO, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(files) - partial} embedded" in resumed.stdout
    store = _store(home)
    vectors = stored_vectors(store)
    assert sorted(vectors) == sorted(str(f) for f in files)  # each file exactly once
    clean = _store(tmp_path / "clean")
    run_ingest(clean, IngestOptions(paths=[str(tmp_path / "lib")], workers=1))
    for path, vector in stored_vectors(clean).items():
        np.testing.assert_allclose(vectors[path], vector, atol=1e-6)
    assert cli.main(["check", "--home", str(home)]) == 0


def test_postgresql_store(tmp_path, postgres_url):
    from tests.indexer.test_store import drop_all

    drop_all(postgres_url)
    files = library.good_library(tmp_path / "lib")
    store = _store(tmp_path / "home", database_url=postgres_url)
    try:
        report = run_ingest(store, IngestOptions(paths=[str(tmp_path / "lib")], workers=1))
        assert report.stats.embedded == len(files)
        hits = Searcher(store, "default").search_audio(files[0], 1)
        assert hits[0].path == str(files[0]) and hits[0].format
        assert run_ingest(store, IngestOptions(paths=[str(tmp_path / "lib")])).stats.skipped == len(files)
    finally:
        store.close()
        drop_all(postgres_url)


def test_export_check_and_repair(tmp_path, capsys):
    import pyarrow.parquet as pq

    files = library.good_library(tmp_path / "lib")
    home = tmp_path / "home"
    store = _store(home)
    run_ingest(store, IngestOptions(paths=[str(tmp_path / "lib")], workers=1))
    out = tmp_path / "export.parquet"
    assert cli.main(["export", "--home", str(home), "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert table.num_rows == len(files)
    meta = table.schema.metadata
    assert meta[b"clapsearch.model_fingerprint"].decode() == store.manifest.fingerprint
    exported = dict(zip(table.column("path").to_pylist(), np.asarray(table.column("vector").to_pylist())))
    for path, vector in stored_vectors(store).items():
        np.testing.assert_array_equal(exported[path], vector)
    # Damage one stored vector and add a row the index has not seen (a kill after commit).
    col = store.collection("default")
    victim = catalog.known_files(store.db, col.id, [str(files[0])])[str(files[0])].id
    with sqlite3.connect(home / "clapsearch.db") as conn:
        conn.execute("UPDATE file_vectors SET vector = ? WHERE file_id = ?", (b"\x00" * 12, victim))
    assert cli.main(["check", "--home", str(home)]) == 1
    assert "damaged" in capsys.readouterr().out
    assert cli.main(["check", "--home", str(home), "--repair"]) == 0
    assert cli.main(["check", "--home", str(home)]) == 0
    again = run_ingest(store, IngestOptions(paths=[str(tmp_path / "lib")], workers=1))
    assert again.stats.embedded == 1  # the damaged file is re-embedded
    assert cli.main(["check", "--home", str(home)]) == 0


def test_a_second_ingest_of_the_same_collection_waits_its_turn(tmp_path, capsys):
    library.good_library(tmp_path / "lib")
    store = _store(tmp_path / "home")
    with store.lock("default"):
        assert cli.main(["ingest", str(tmp_path / "lib"), "--home", str(tmp_path / "home"), "-q"]) == 2
    assert "another process" in capsys.readouterr().err


def test_rebuild_moves_a_collection_to_another_model(tmp_path, tiny_model_dir):
    files = library.good_library(tmp_path / "lib")
    home = tmp_path / "home"
    run_ingest(_store(home), IngestOptions(paths=[str(tmp_path / "lib")], workers=1))
    with pytest.raises(ModelMismatchError):
        run_ingest(_store(home, model=tiny_model_dir), IngestOptions(paths=[str(tmp_path / "lib")]))
    assert cli.main(["rebuild", "--home", str(home), "--model", str(tiny_model_dir), "-q"]) == 0
    tiny = _store(home, model=tiny_model_dir)
    assert tiny.collection("default").model_fingerprint == tiny.manifest.fingerprint
    assert len(stored_vectors(tiny)) == len(files)
    assert Searcher(tiny, "default").search_audio(files[1], 1)[0].path == str(files[1])
    with pytest.raises(ModelMismatchError):
        Searcher(_store(home), "default")  # the default model may not serve it


def test_a_stuck_decoder_is_killed_and_replaced_and_the_run_goes_on(tmp_path):
    import soundfile as sf

    lib = tmp_path / "lib"
    long_file = lib / "a_long.flac"
    lib.mkdir()
    with sf.SoundFile(long_file, "w", 48_000, 2, format="FLAC") as handle:  # 10 min, written in blocks
        for block in range(60):
            handle.write(tone(10.0, 48_000, channels=2, seed=block))
    short = [library.write(lib / f"b{i}.wav", 1.0, sr=16_000, seed=i) for i in range(3)]
    store = _store(tmp_path / "home")
    report = run_ingest(store, IngestOptions(paths=[str(lib)], workers=1, task_timeout_s=0.5))
    assert [(Path(p).name, code) for p, code, _ in report.failures] == [("a_long.flac", "audio.timeout")]
    assert report.stats.embedded == len(short) and report.exit_code == 1


def test_a_remote_source_is_listed_and_fetched_through_fsspec(tmp_path, encoder):
    """A bucket behaves like a folder; here an archive stands in for it (zip:// chained URL)."""
    import zipfile

    local = [
        library.write(tmp_path / "src" / f"{name}.wav", 1.5, sr=16_000, freq=f, seed=i)
        for i, (name, f) in enumerate([("hum", 120.0), ("whistle", 2400.0)])
    ]
    archive = tmp_path / "pack.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in local:
            zf.write(path, f"sfx/{path.name}")
        zf.writestr("sfx/readme.txt", "not audio")
    store = _store(tmp_path / "home")
    url = f"zip://sfx/*.wav::{archive}"
    report = run_ingest(store, IngestOptions(paths=[url], workers=1))
    assert report.stats.embedded == 2 and report.exit_code == 0
    vectors = stored_vectors(store)
    assert sorted(vectors) == [f"zip://sfx/hum.wav::{archive}", f"zip://sfx/whistle.wav::{archive}"]
    direct = {Path(item.path).name: item.vector for item in encoder.embed_files([str(p) for p in local])}
    for url_path, vector in vectors.items():
        np.testing.assert_allclose(vector, direct[url_path.split("::")[0].rsplit("/", 1)[1]], atol=1e-6)
    assert run_ingest(store, IngestOptions(paths=[url], workers=1, prune=True)).stats.skipped == 2
