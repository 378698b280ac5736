"""Ingest progress on stderr: files done of found, files/s, audio-h/s, ETA, skipped and failed.

On a terminal one line is redrawn in place (at most twice a second). When stderr is a pipe or
a log file, a plain line is written every ``interval`` seconds instead, so a long ingest in CI
or under ``nohup`` shows it is alive; either way the last line is the final count (100 % when
every file found was handled).
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

BAR_WIDTH = 20


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def describe(stats, now: float) -> tuple[str, float | None]:
    """The progress text for ``IngestStats`` (without the bar) and the fraction done, if known."""
    elapsed = max(now - stats.started, 1e-6)
    done = stats.done
    total = stats.discovered if stats.discovery_done else None
    worked = stats.embedded + stats.failed  # skipped files cost nothing: not in the rate
    rate = worked / elapsed
    if total is None:
        count, fraction = f"{done}/{stats.discovered}+ files (still looking)", None
    else:
        fraction = done / total if total else 1.0
        count = f"{done}/{total} files ({100 * fraction:.0f} %)"
    # Failures first: a narrow terminal cuts the end of the line.
    parts = [
        count,
        f"{stats.failed} failed",
        f"{stats.skipped} unchanged",
        f"{rate:.1f} files/s",
        f"{stats.audio_seconds / 3600 / elapsed:.3f} audio-h/s",
    ]
    if fraction is not None and fraction >= 1.0:
        parts.append(f"took {_duration(elapsed)}")
    elif total is not None and rate > 0:
        parts.append(f"ETA {_duration((total - done) / rate)}")
    return ", ".join(parts), fraction


class IngestProgress:
    """Callable that ``run_ingest`` hands ``IngestStats`` to; ``close()`` writes the last line."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None, interval: float = 5.0):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 0.5 if self.tty else interval
        self.last = time.perf_counter()  # the first piped line comes after one interval
        self.stats = None
        self.width = 0  # of the line drawn in place (to blank leftovers)

    def __call__(self, stats) -> None:
        self.stats = stats
        now = time.perf_counter()
        finished = stats.discovery_done and stats.done >= stats.discovered
        if self.quiet or finished or now - self.last < self.interval:
            return  # the final line is close()'s, written once
        self.last = now
        self._write(stats, now, final=False)

    def _write(self, stats, now: float, *, final: bool) -> None:
        text, fraction = describe(stats, now)
        if not self.tty:
            self.stream.write(f"ingest: {text}\n")
        else:
            if fraction is not None:
                filled = int(BAR_WIDTH * min(fraction, 1.0))
                text = f"|{'#' * filled}{'.' * (BAR_WIDTH - filled)}| {text}"
            columns = shutil.get_terminal_size((100, 20)).columns
            text = text[: max(columns - 1, 20)]
            pad = " " * max(self.width - len(text), 0)
            self.width = len(text)
            self.stream.write(f"\r{text}{pad}" + ("\n" if final else ""))
        self.stream.flush()

    def close(self) -> None:
        if not self.quiet and self.stats is not None:
            self._write(self.stats, time.perf_counter(), final=True)
