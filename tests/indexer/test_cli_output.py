"""What `indexer ingest` prints: progress lines when stderr is a pipe, a bar that ends at 100 %
on a terminal, and no foreign start-up chatter unless -v asks for it."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from indexer.cli.progress import IngestProgress, describe
from indexer.ingest.pipeline import IngestStats
from tests.helpers import run_indexer
from tests.indexer import library

REPO = Path(__file__).resolve().parents[2]
CHATTER = ("faiss.loader", "ModuleNotFoundError", "alembic", "setuptools", "pkg_resources")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _stats(**fields) -> IngestStats:
    stats = IngestStats(**fields)
    stats.started -= 10.0  # ten seconds in
    return stats


def test_piped_ingest_prints_progress_lines_and_no_library_chatter(tmp_path):
    for i in range(6):
        library.write(tmp_path / "lib" / f"clip{i}.wav", 1.0, sr=16_000, freq=200.0 + 90 * i, seed=i)
    run = run_indexer(
        "ingest", str(tmp_path / "lib"), "--home", str(tmp_path / "home"), "--workers", "1", "--progress-every", "0.2"
    )
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("ingest: ")]
    assert len(lines) >= 2, run.stderr  # alive while it runs, not only at the end
    assert lines[-1].startswith("ingest: 6/6 files (100 %), 0 failed, 0 unchanged,") and "files/s" in lines[-1]
    assert "\r" not in run.stderr  # no bar redraws in a log file
    assert not [word for word in CHATTER if word in run.stderr + run.stdout], run.stderr

    quiet = run_indexer("status", "--home", str(tmp_path / "home"))
    assert quiet.returncode == 0 and quiet.stderr == ""
    verbose = run_indexer("status", "--home", str(tmp_path / "home"), "-v")  # -v after the command works too
    assert verbose.returncode == 0 and "alembic.runtime.migration" in verbose.stderr


def test_progress_text_has_rate_and_eta_and_no_stray_separators():
    text, fraction = describe(
        _stats(discovered=40, discovery_done=True, embedded=10, skipped=5, failed=0, audio_seconds=36.0),
        now=_stats().started + 10.0,
    )
    assert fraction == 15 / 40
    assert text.startswith("15/40 files (38 %), 0 failed, 5 unchanged, 1.0 files/s")
    assert "ETA 25s" in text and ", ," not in text

    looking, unknown = describe(_stats(discovered=7, embedded=2), now=_stats().started + 10.0)
    assert unknown is None and looking.startswith("2/7+ files (still looking)")


def test_terminal_bar_ends_at_100_percent_on_its_own_line():
    out = _Terminal()
    bar = IngestProgress(stream=out)
    bar.last -= 1.0
    bar(_stats(discovered=4, discovery_done=True, embedded=3))
    bar(_stats(discovered=4, discovery_done=True, embedded=3, failed=1))
    bar.close()
    frames = out.getvalue().split("\r")
    assert "(75 %)" in frames[1]
    assert frames[-1].startswith("|####################| 4/4 files (100 %), 1 failed") and frames[-1].endswith("\n")
    assert out.getvalue().count("100 %") == 1 and ", ," not in out.getvalue()


def test_library_start_up_lines_are_dropped_unless_debug_or_verbose(caplog):
    from indexer import logs

    logs.quiet_library_loggers()
    with caplog.at_level(logging.INFO):
        logging.getLogger("faiss.loader").info("Loading faiss with AVX512 support.")
        logging.getLogger("faiss.loader").warning("a real problem")
    assert [r.getMessage() for r in caplog.records] == ["a real problem"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    assert [r.getMessage() for r in caplog.records] == ["Context impl SQLiteImpl."]
