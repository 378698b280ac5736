"""The ingest progress bar: files/s, audio hours/s, ETA and errors so far."""

from __future__ import annotations

import sys
import time


class IngestProgress:
    """Renders ``IngestStats`` with tqdm at most twice a second; silent when stderr is not a
    terminal unless ``force`` (so CI logs stay readable)."""

    def __init__(self, *, quiet: bool = False):
        from tqdm import tqdm

        self.bar = tqdm(total=0, unit="file", disable=True if quiet else None, mininterval=0.5,
                        dynamic_ncols=True, file=sys.stderr,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {postfix}]")
        self.last = 0.0

    def __call__(self, stats) -> None:
        now = time.perf_counter()
        if now - self.last < 0.5 and not stats.discovery_done:
            return
        self.last = now
        elapsed = max(now - stats.started, 1e-6)
        self.bar.total = stats.discovered if stats.discovery_done else max(stats.discovered, stats.done + 1)
        self.bar.n = stats.done
        self.bar.set_postfix_str(f"{stats.embedded / elapsed:.1f} files/s, "
                                 f"{stats.audio_seconds / 3600 / elapsed:.4f} audio-h/s, "
                                 f"skipped {stats.skipped}, errors {stats.failed}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
