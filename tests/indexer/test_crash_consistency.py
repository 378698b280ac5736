"""Crash consistency of `indexer ingest` under kill -9 at random points (issue 16, reliability suite).

Each round starts `indexer ingest` (2 decode workers, commits of 3 files) on a library that
changes between rounds (new files, one file rewritten), then kills it after a random delay:
the main process alone (what the OOM killer does) or its whole process tree, in turn. After
every kill:

* the decode workers are gone (they die with their parent; one still starting up exits as soon as
  it has imported its modules and sees its parent gone: ``ORPHAN_BOUND_S``);
* the database and the published index agree as `indexer check` sees them: no damaged vector,
  no unreadable or foreign index, nothing in the index the database does not know, except what
  an interrupted run had not published yet;
* no file has two rows.

After the last kill a run to completion must leave `indexer check` clean, every file exactly
once, the index holding exactly the live rows, and every file and segment vector bit-identical
to a clean, never-killed ingest of the same library. Half the rounds ingest with ``--segments``.

    CLAPSEARCH_TEST_CRASH_KILLS=50   long mode: 50 kills (CI: 10), split over the two modes
    CLAPSEARCH_TEST_CRASH_SEED=N     replay the random delays of a run (printed on failure)
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from indexer.settings import IndexerSettings
from indexer.store import catalog, vector_rows, versions
from indexer.store.check import check_collection
from indexer.store.store import Store
from indexer.store.vector_index import VectorIndex
from tests.helpers import wait_until
from tests.indexer.library import write

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "clapsearch-sfx-v1"
KILLS = int(os.environ.get("CLAPSEARCH_TEST_CRASH_KILLS", "10"))
SEED = int(os.environ.get("CLAPSEARCH_TEST_CRASH_SEED", str(random.SystemRandom().randrange(1 << 30))))
# A worker killed with its parent goes at once; one still starting (importing its modules, seconds
# on a loaded machine) arms the parent-death signal, sees it was orphaned and exits when it gets there.
ORPHAN_BOUND_S = 20.0
# What `indexer check` may say right after a kill: the run had committed rows it had not published.
INTERRUPTED = re.compile(
    r"^(files|segments): (.* \(unpublished changes: an ingest was interrupted\?\)|\d+ vectors but no published index)$"
)

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def _command(library: Path, home: Path, segments: bool) -> list[str]:
    command = [sys.executable, "-m", "indexer.cli.run", "ingest", str(library), "--home", str(home), "-q"]
    command += ["--model", str(MODEL), "--workers", "2", "--commit-every", "3"]
    return command + (["--segments"] if segments else [])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _grow(library: Path, round_no: int, rng: random.Random) -> None:
    """New work for the next round: two new files, and one earlier file rewritten (re-embedded)."""
    for j in range(2):
        seconds = 24.0 if (round_no + j) % 5 == 0 else rng.uniform(1.0, 2.5)  # now and then a segmented one
        write(
            library / f"r{round_no:03d}_{j}.wav", seconds, sr=16_000, freq=rng.uniform(150, 3000), seed=round_no * 7 + j
        )
    earlier = sorted(library.glob("*.wav"))
    victim = earlier[rng.randrange(len(earlier))]
    write(victim, 2.0, sr=16_000, freq=rng.uniform(150, 3000), seed=10_000 + round_no)


def _snapshot(home: Path) -> tuple[dict[str, bytes], dict[tuple[str, float], bytes], list[str]]:
    """(path -> file vector, (path, start) -> segment vector, every path row) straight from SQLite."""
    with sqlite3.connect(home / "clapsearch.db", timeout=30) as db:
        rows = db.execute(
            "SELECT f.path, v.vector FROM files f LEFT JOIN file_vectors v ON v.file_id = f.id "
            "WHERE f.status = 'indexed'"
        ).fetchall()
        segments = db.execute(
            "SELECT f.path, s.start_s, v.vector FROM segments s JOIN files f ON f.id = s.file_id "
            "LEFT JOIN segment_vectors v ON v.segment_id = s.id"
        ).fetchall()
        paths = [p for (p,) in db.execute("SELECT path FROM files")]
    return {p: v for p, v in rows}, {(p, s): v for p, s, v in segments}, paths


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(procs: list[psutil.Process]) -> list[int]:
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _survivors(procs: list[psutil.Process], timeout_s: float) -> list[int]:
    wait_until(lambda: not _alive(procs), timeout_s)
    return _alive(procs)


def _assert_consistent(home: Path, *, finished: bool) -> None:
    """What `indexer check` reports, and that no path has two rows; ``finished``: nothing pending."""
    if not (home / "clapsearch.db").exists():
        return  # killed before the database was created
    store = Store.open(IndexerSettings(home=home, model=MODEL))
    try:
        if not catalog.list_collections(store.db):
            return  # killed before the collection was created
        report = check_collection(store, "default")
        unexpected = [p for p in report.problems if finished or not INTERRUPTED.match(p)]
        assert not unexpected, report.problems
        collection = store.collection("default")
        for kind in ["files"] + (["segments"] if collection.segment_seconds else []):
            live = versions.current_version(store.index_dir, "default", kind)
            if live is None:
                assert not finished, f"{kind}: nothing published after a complete run"
                continue
            held = VectorIndex.load(live.folder).ids()  # a published version is always whole
            assert len(set(held.tolist())) == len(held), f"{kind}: an id twice in the index"
            if finished:
                assert sorted(held.tolist()) == sorted(vector_rows.live_ids(store.db, collection.id, kind).tolist())
    finally:
        store.close()
    paths = _snapshot(home)[2]
    assert len(paths) == len(set(paths)), "a file has two rows"


def _kill_rounds(library: Path, home: Path, segments: bool, kills: int, rng: random.Random) -> list[str]:
    """``kills`` rounds of start-then-kill -9; what happened in each, for the failure message."""
    log: list[str] = []
    horizon = 6.0  # seconds a round may run before its kill; shrinks to what whole runs take
    done = round_no = 0
    while done < kills:
        round_no += 1
        assert round_no <= 3 * kills, f"too few runs lived long enough to be killed: {log}"
        _grow(library, round_no, rng)
        started = time.monotonic()
        proc = subprocess.Popen(
            _command(library, home, segments),
            cwd=REPO,
            env=_env(),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        delay = rng.uniform(0.5, horizon)
        tree: list[psutil.Process] = []
        while time.monotonic() - started < delay and proc.poll() is None:
            tree = _descendants(proc.pid) or tree  # the decode workers, seen last while alive
            time.sleep(0.05)
        if proc.poll() is not None:  # finished first: no kill this round, aim earlier next time
            _, err = proc.communicate()
            assert proc.returncode == 0, err.decode()[-2000:]
            horizon = max(1.0, 0.9 * (time.monotonic() - started))
            log.append(f"round {round_no}: finished in {time.monotonic() - started:.1f} s")
            continue
        whole_tree = done % 2 == 1
        tree = _descendants(proc.pid) or tree
        if whole_tree:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGKILL)  # the main process alone, as the OOM killer does
        proc.wait(10)
        proc.stderr.close()  # type: ignore[union-attr]
        done += 1
        log.append(f"round {round_no}: killed ({'tree' if whole_tree else 'main'}) after {delay:.2f} s")
        killed_at = time.monotonic()
        orphans = _survivors(tree, ORPHAN_BOUND_S)
        log[-1] += f", workers gone after {time.monotonic() - killed_at:.2f} s"
        try:
            assert not orphans, f"decode workers outlived their ingest: {orphans}; {log}"
            _assert_consistent(home, finished=False)
        finally:
            for pid in _alive(tree):
                os.kill(pid, signal.SIGKILL)
    return log


@pytest.mark.parametrize("segments", [False, True], ids=["files", "segments"])
def test_kill_minus_9_at_random_points_loses_and_duplicates_nothing(tmp_path, segments):
    rng = random.Random(SEED + segments)
    library, home = tmp_path / "library", tmp_path / "home"
    for i in range(6):
        write(library / f"base_{i}.wav", 24.0 if segments and i == 0 else 1.5, sr=16_000, freq=200 + 90 * i, seed=i)
    kills = (KILLS + (0 if segments else 1)) // 2  # the two modes share the total
    log = _kill_rounds(library, home, segments, kills, rng)
    context = f"seed {SEED} (CLAPSEARCH_TEST_CRASH_SEED), rounds: {log}"

    clean_home = tmp_path / "clean"
    # the resumed run to completion and a clean, never-killed ingest of the same library, side by side
    runs = [
        subprocess.Popen(
            _command(library, h, segments), cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for h in (home, clean_home)
    ]
    for run in runs:
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, (err.decode()[-2000:], context)
    _assert_consistent(home, finished=True)
    files, segs, paths = _snapshot(home)
    clean_files, clean_segs, _ = _snapshot(clean_home)
    expected = {str(p) for p in library.glob("*.wav")}
    assert sorted(paths) == sorted(expected), context  # every file exactly once, nothing lost
    assert files.keys() == clean_files.keys() and segs.keys() == clean_segs.keys(), context
    differ = [p for p in files if files[p] != clean_files[p]] + [k for k in segs if segs[k] != clean_segs[k]]
    assert not differ, (f"vectors differ from a clean ingest's: {differ[:5]}", context)  # bit for bit
    assert bool(segs) == segments
    killed = [line for line in log if "killed" in line]
    gone = [float(k.rsplit("after ", 1)[1].split(" s")[0]) for k in killed if "(main)" in k]
    print(
        f"\n{'segments' if segments else 'files'}: {len(killed)} kills ({sum('(main)' in k for k in killed)} main "
        f"process alone, workers gone within {max(gone, default=0):.2f} s; {sum('(tree)' in k for k in killed)} whole "
        f"tree), {len(log) - len(killed)} rounds finished "
        f"first; {len(paths)} files, {len(segs)} segments: 0 lost, 0 duplicated, all bit-identical; seed {SEED}"
    )
