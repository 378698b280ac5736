"""``clapsearch-worker --watch FOLDER``: the worker keeps a collection in sync with a folder
beside its job loop, and the watcher goes when the worker goes (SIGTERM or SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import reap, wait_until
from tests.indexer.library import write

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "clapsearch-sfx-v1"

pytest.importorskip("watchfiles")


def _indexed(home: Path, collection: str) -> set[str]:
    from indexer.settings import IndexerSettings
    from indexer.store import catalog
    from indexer.store.store import Store

    if not (home / "clapsearch.db").exists():
        return set()
    try:  # the worker's watcher may be creating the database at this moment: poll again
        store = Store.open(IndexerSettings(home=home, model=MODEL))
    except Exception:
        return set()
    try:
        found = store.collection(collection)
        return {os.path.basename(p) for _, p in catalog.iter_file_paths(store.db, found.id)}
    except Exception:  # not created yet
        return set()
    finally:
        store.close()


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.needs_redis
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_the_worker_watches_a_folder_and_its_watcher_goes_with_it(redis_url, tmp_path, how):
    library, home = tmp_path / "library", tmp_path / "home"
    write(library / "first.wav", 1.0, freq=440.0)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CLAPSEARCH_HOME": str(home),
        "CLAPSEARCH_MODEL": str(MODEL),
        "CLAPSEARCH_REDIS_URL": redis_url,
        "CLAPSEARCH_JOB_QUEUE": f"test-watch-{uuid.uuid4().hex[:8]}",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "service.worker", "--watch", str(library), "--watch-collection", "sfx"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_until(lambda: _indexed(home, "sfx") == {"first.wav"}, 120.0), "the catch-up ingest never ran"
        write(library / "birds" / "second.flac", 1.0, freq=880.0)
        assert wait_until(lambda: _indexed(home, "sfx") == {"first.wav", "second.flac"}, 60.0), "a new file was missed"
        (library / "first.wav").unlink()
        assert wait_until(lambda: _indexed(home, "sfx") == {"second.flac"}, 60.0), "a removed file stayed"
        watchers = _children(worker.pid)
        assert watchers, "no watcher process beside the worker"
        worker.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        worker.wait(30)
        assert wait_until(lambda: not any(_alive(p) for p in watchers), 20.0), "the watcher outlived the worker"
    finally:
        reap(worker)


def test_a_watch_path_that_is_not_a_folder_is_refused(tmp_path, redis_url):
    env = {**os.environ, "PYTHONPATH": str(REPO), "CLAPSEARCH_HOME": str(tmp_path), "CLAPSEARCH_REDIS_URL": redis_url}
    done = subprocess.run(
        [sys.executable, "-m", "service.worker", "--watch", str(tmp_path / "nowhere")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "not a folder" in done.stderr
