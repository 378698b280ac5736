"""What an ingest is asked to do (``IngestOptions``), how far it got (``IngestStats``, which
the progress display reads while it runs) and what it did (``IngestReport``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from indexer.audio.decode import DecodeLimits
from indexer.ingest.discover import AUDIO_EXTENSIONS
from indexer.store.catalog import SegmentSpec


@dataclass
class IngestOptions:
    paths: list[str]
    collection: str = "default"
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS
    follow_symlinks: bool = False
    prune: bool = False  # forget files under ``paths`` that no longer exist
    retry_failed: bool = False  # re-try files that failed before even if unchanged
    segments: SegmentSpec | None = None
    workers: int | None = None  # decode processes (default: one per core)
    batch_size: int = 32  # views per embedding flush
    commit_every: int = 200  # files per transaction (also at least every 5 s)
    publish_every_s: float = 600.0  # long ingests become searchable as they go
    task_timeout_s: float = 900.0  # a decoder stuck on one file longer is killed
    limits: DecodeLimits = field(default_factory=DecodeLimits)


@dataclass
class IngestStats:
    discovered: int = 0
    discovery_done: bool = False
    skipped: int = 0  # unchanged (size + mtime), or unchanged content
    embedded: int = 0
    failed: int = 0
    removed: int = 0
    audio_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    @property
    def done(self) -> int:
        return self.skipped + self.embedded + self.failed


@dataclass
class IngestReport:
    collection: str
    stats: IngestStats
    failures: list[tuple[str, str, str]]  # (path, code, message): failed in this run
    walk_errors: list[tuple[str, str]]
    published: list = field(default_factory=list)
    seconds: float = 0.0
    # Every file under the run's paths failing now, also those that failed in an earlier run
    # and were skipped as unchanged in this one: a re-run must not make them look fixed.
    failing: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if (self.failures or self.walk_errors or self.failing) else 0
