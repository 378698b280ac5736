"""Decode workers die with their ingest (issue 16, defect 9): the OOM killer takes only the
biggest process, the ingest's main one; its workers must not linger holding memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import wait_until
from tests.indexer.library import write

MODEL = Path(__file__).resolve().parents[2] / "models" / "clapsearch-sfx-v1"
REPO = Path(__file__).resolve().parents[2]

INGEST = """
import sys
from indexer.ingest.pipeline import IngestOptions, run_ingest
from indexer.settings import IndexerSettings
from indexer.store.store import Store

store = Store.open(IndexerSettings(home=sys.argv[1], model=sys.argv[2], index_dir=None))
run_ingest(store, IngestOptions(paths=[sys.argv[3]], workers=2))
"""


def _decoders(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if "spawn_main" in " ".join(c.cmdline())]


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killing_the_ingest_main_process_ends_its_decode_workers(tmp_path):
    library = tmp_path / "library"
    for i in range(24):  # long enough that the ingest is still running when killed
        write(library / f"tone_{i:02d}.wav", 20.0, sr=16_000, freq=200.0 + 37 * i, seed=i)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    main = subprocess.Popen(
        [sys.executable, "-c", INGEST, str(tmp_path / "home"), str(MODEL), str(library)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[psutil.Process] = []
    try:
        workers = wait_until(lambda: len(found := _decoders(main.pid)) >= 2 and found, 60.0) or []
        assert len(workers) >= 2, "the ingest never started its decode workers"
        time.sleep(0.5)  # let them get into their loop (arm the parent-death signal)
        main.send_signal(signal.SIGKILL)  # only the main process, as the OOM killer does
        main.wait(10)
        gone = wait_until(lambda: not _alive(workers), 5.0)
        assert gone, f"decode workers outlived their ingest: {[p.pid for p in _alive(workers)]}"
    finally:
        for proc in workers:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        if main.poll() is None:
            main.kill()
            main.wait(10)
