"""`indexer watch`: a collection follows its folders as files appear, change and go, and a
restart catches up on what changed while nothing watched."""

from __future__ import annotations

import os
import threading
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from indexer import cli
from indexer.ingest.report import IngestOptions
from indexer.ingest.watch import WatchOptions, changed_folders, watch_collection
from indexer.settings import IndexerSettings
from indexer.store import catalog
from indexer.store.store import Store
from tests.helpers import wait_until
from tests.indexer import library

EXT = (".wav", ".flac")


def test_changed_folders_are_the_nearest_existing_audio_folders_inside_the_roots(tmp_path):
    root = tmp_path / "lib"
    (root / "birds" / "dawn").mkdir(parents=True)
    (root / "rain").mkdir()
    r = str(root)
    changes = [
        (1, f"{r}/birds/dawn/robin.wav"),
        (1, f"{r}/birds/wren.flac"),  # its folder covers birds/dawn
        (2, f"{r}/rain/notes.txt"),  # not audio: ignored
        (3, f"{r}/gone/deeper/old.wav"),  # a folder removed as a whole: the root is what exists
        (1, f"{tmp_path}/elsewhere/x.wav"),  # outside the roots: ignored
    ]
    assert changed_folders(changes, [r], EXT) == [r]
    assert changed_folders(changes[:3], [r], EXT) == [f"{r}/birds"]


def _paths(store: Store) -> set[str]:
    try:
        collection = store.collection("default")
    except Exception:
        return set()
    return {os.path.basename(p) for _, p in catalog.iter_file_paths(store.db, collection.id)}


@contextmanager
def _watching(store: Store, root: Path, syncs: list):
    """A watcher thread over ``root`` for the block; stopped after it, and checked to have stopped."""
    stop = threading.Event()
    thread = threading.Thread(
        target=watch_collection,
        args=(store, IngestOptions(paths=[str(root)], workers=1), WatchOptions(quiet_s=0.3, max_wait_s=2.0)),
        kwargs={"stop": stop, "on_sync": syncs.append},
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive(), "the watcher did not stop"


def test_the_collection_follows_the_folder_and_a_restart_catches_up(tmp_path):
    root = tmp_path / "lib"
    library.write(root / "a.wav", 1.0, sr=16_000, freq=300)
    store = Store.open(IndexerSettings(home=tmp_path / "home"))
    syncs: list = []
    with _watching(store, root, syncs):
        assert wait_until(lambda: _paths(store) == {"a.wav"}, 60), _paths(store)
        library.write(root / "new" / "b.flac", 1.5, sr=16_000, freq=900, seed=1)
        assert wait_until(lambda: _paths(store) == {"a.wav", "b.flac"}, 60), _paths(store)
        (root / "a.wav").unlink()
        assert wait_until(lambda: _paths(store) == {"b.flac"}, 60), _paths(store)
        threading.Event().wait(1.0)  # the deletion's report lands after its rows are gone
        synced = len(syncs)
        (root / "notes.txt").write_text("not audio")  # no sync for a file that is not ours
        threading.Event().wait(1.5)
        assert len(syncs) == synced
    assert all(report.exit_code == 0 for report in syncs)
    # while nothing watches, a file arrives; the next start indexes it before any event
    library.write(root / "c.wav", 1.0, sr=16_000, freq=1500, seed=2)
    syncs.clear()
    with _watching(store, root, syncs):
        assert wait_until(lambda: _paths(store) == {"b.flac", "c.wav"}, 60), _paths(store)
    store.close()


def test_watch_refuses_what_is_not_a_folder(tmp_path, capsys):
    audio = library.write(tmp_path / "one.wav", 1.0, sr=16_000)
    assert cli.main(["watch", str(audio), "--home", str(tmp_path / "home")]) == 2
    assert "is a file" in capsys.readouterr().err or "directory" in capsys.readouterr().err
    store = Store.open(IndexerSettings(home=tmp_path / "home"))
    with pytest.raises(NotADirectoryError):
        watch_collection(store, IngestOptions(paths=[str(audio)]))
    store.close()


def test_a_busy_collection_is_synced_once_the_other_ingest_ends(tmp_path):
    root = tmp_path / "lib"
    library.write(root / "a.wav", 1.0, sr=16_000, freq=300)
    store = Store.open(IndexerSettings(home=tmp_path / "home"))
    store.open_collection("default")
    syncs: list = []
    with ExitStack() as watching:
        with store.lock("default"):  # another ingest holds the collection
            watching.enter_context(_watching(store, root, syncs))
            threading.Event().wait(1.0)
            assert syncs == [] and _paths(store) == set()
        assert wait_until(lambda: _paths(store) == {"a.wav"}, 60), _paths(store)
    store.close()
