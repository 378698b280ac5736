"""Every hostile audio kind (``hostile_audio.KINDS``) plus good files, in one `indexer ingest`
run in a subprocess: each kind ends as its catalogue says (a per-file error with its code,
indexed, or not picked up), the good files are indexed, the run ends by itself within a bound,
and the process tree's peak memory stays bounded (psutil, sampled every 20 ms).

As root, the ingest runs without the capabilities that bypass file permissions
(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a file of mode 000 is unreadable to it as to
anyone else; where they cannot be dropped, the permission kind is skipped.
"""

from __future__ import annotations

import ctypes
import os
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from indexer.ingest.discover import os_path
from tests.reliability import hostile_audio as hostile

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "clapsearch-sfx-v2"
BOUND_S = 180.0  # the whole run, generous on a loaded 2-core CI machine (measured: about 10 s)
RSS_BOUND = 2 * 2**30  # the ingest and its 2 decoders (measured: about 0.6 GB)
_PR_CAPBSET_DROP, _DAC_CAPS = 24, (1, 2)  # <linux/prctl.h>, CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH


def _drop_dac_capabilities() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _DAC_CAPS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _can_drop_capabilities() -> bool:
    try:
        subprocess.run([sys.executable, "-c", ""], preexec_fn=_drop_dac_capabilities, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


@dataclass
class Run:
    paths: dict[str, Path]
    good: list[Path]
    outcomes: dict[bytes, tuple[str, str | None]]  # os path -> (status, error code)
    vectors: list[np.ndarray]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss: int
    permissions_enforced: bool

    def outcome(self, path: Path) -> str:
        row = self.outcomes.get(os.fsencode(str(path)))
        if row is None:
            return hostile.IGNORED
        status, code = row
        return hostile.INDEXED if status == "indexed" else str(code)


def _peak_rss(proc: subprocess.Popen) -> int:
    import psutil

    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
        except psutil.Error:  # a decoder ended between the listing and the reading
            pass
        time.sleep(0.02)
    return peak


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    pytest.importorskip("psutil")
    base = tmp_path_factory.mktemp("hostile")
    lib, home = base / "lib", base / "home"
    paths = hostile.write_all(lib)
    good = hostile.write_good(lib)
    root = os.geteuid() == 0
    enforced = not root or _can_drop_capabilities()
    stop = threading.Event()
    changers = [
        threading.Thread(target=kind.during, args=(paths[kind.name], stop), daemon=True)
        for kind in hostile.catalogue()
        if kind.during is not None
    ]
    command = [sys.executable, "-m", "indexer.cli.run", "ingest", str(lib), "--home", str(home)]
    command += ["--model", str(MODEL), "-q", "--workers", "2"]
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_drop_dac_capabilities if root and enforced else None,
    )
    for thread in changers:
        thread.start()
    timer = threading.Timer(BOUND_S, proc.kill)
    timer.start()
    try:
        # stdout/stderr are read after the end: the output is a few KB, far below a pipe's buffer
        peak = _peak_rss(proc)
    finally:
        timer.cancel()
        stop.set()
        for thread in changers:
            thread.join(10)
    stdout, stderr = proc.communicate()
    seconds = time.monotonic() - started
    with sqlite3.connect(home / "clapsearch.db") as db:
        rows = db.execute(
            "SELECT f.path, f.status, f.error_code, v.vector FROM files f LEFT JOIN file_vectors v ON v.file_id = f.id"
        ).fetchall()
    return Run(
        paths=paths,
        good=good,
        outcomes={os.fsencode(os_path(path)): (status, code) for path, status, code, _ in rows},
        vectors=[np.frombuffer(v, np.float32) for *_, v in rows if v is not None],
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
        seconds=seconds,
        peak_rss=peak,
        permissions_enforced=enforced,
    )


def test_the_catalogue_has_at_least_40_kinds():
    assert len(hostile.catalogue()) >= 40


def test_the_run_ends_by_itself_within_its_bound_and_says_which_files_failed(run):
    assert run.seconds < BOUND_S and run.returncode == 1, (run.returncode, run.stderr[-3000:])  # 1: files failed
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    failed = sum(1 for status, _ in run.outcomes.values() if status == "failed")
    assert f"{failed} failed" in run.stdout and f"{failed} files failing" in run.stderr
    print(
        f"\nhostile ingest: {len(hostile.catalogue())} kinds + {len(run.good)} good files, {len(run.outcomes)} rows "
        f"({failed} failed), {run.seconds:.1f} s, peak RSS {run.peak_rss / 2**20:.0f} MiB"
    )


def test_memory_stays_bounded(run):
    assert 0 < run.peak_rss < RSS_BOUND, run.peak_rss


def test_the_good_files_are_indexed_and_every_vector_is_finite(run):
    assert [run.outcome(p) for p in run.good] == [hostile.INDEXED] * len(run.good)
    assert run.vectors and all(np.isfinite(v).all() and abs(np.linalg.norm(v) - 1) < 1e-3 for v in run.vectors)


def test_every_error_code_is_a_documented_one(run):
    from indexer import errors

    codes = {cls.code for cls in vars(errors).values() if isinstance(cls, type) and hasattr(cls, "code")}
    assert {code for status, code in run.outcomes.values() if status == "failed"} <= codes


@pytest.mark.parametrize("kind", hostile.catalogue(), ids=lambda k: k.name)
def test_each_hostile_kind_ends_as_the_catalogue_says(run, kind):
    if kind.needs_unprivileged and not run.permissions_enforced:
        pytest.skip("running as root without the right to drop CAP_DAC_OVERRIDE: permissions are not enforced")
    assert run.outcome(run.paths[kind.name]) in kind.ingest, kind.what
