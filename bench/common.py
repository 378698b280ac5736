"""What the benchmarks' scripts share besides machine load (``machine.py``): the command recorded
in a results file, a work folder, quiet library logs, generated audio, and the report's tables,
targets and contention lines, so that every report reads the same way."""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def command_line(argv: list[str] | None, script: str) -> str:
    """The command to record: the process's own, or ``script`` and ``argv`` when ``main`` was
    called from Python (a test)."""
    return " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else f"{script} {' '.join(argv)}"


@contextlib.contextmanager
def work_folder(path: Path | None, prefix: str) -> Iterator[Path]:
    """``path`` (created if missing and kept), or a temporary folder removed on exit."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Silence library warnings and onnxruntime.quantization's root-logger advice."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def synth(rng: np.random.Generator, n: int, rate: int, channels: int = 1, t0: float = 0.0) -> np.ndarray:
    """A few enveloped tones over quiet coloured noise, ``(n, channels)`` float32 in [-1, 1] (``t0``:
    the start time of a block of a longer signal): the benchmarks' generated audio."""
    t = t0 + np.arange(n) / rate
    noise = rng.standard_normal(n)
    noise = np.convolve(noise, np.ones(int(rng.integers(1, 8))) / 4, mode="same")
    mono = rng.uniform(0.005, 0.05) * noise
    for _ in range(int(rng.integers(1, 4))):
        freq = rng.uniform(60, min(8000, rate / 2.5))
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 2.0) * t + rng.uniform(0, 6.3))
        mono += rng.uniform(0.05, 0.3) * env * np.sin(2 * np.pi * freq * t)
    out = np.empty((n, channels), np.float32)
    for c in range(channels):
        out[:, c] = mono * (1.0 - 0.2 * c)
    return np.clip(out, -1, 1)


def print_head(head: str) -> None:
    """A table's header line, underlined."""
    print(head)
    print("-" * len(head))


def target(text: str, measured: str, ok: bool) -> dict:
    """One row of a results file's ``targets``."""
    return {"target": text, "measured": measured, "pass": ok}


def print_targets(checks: list[dict], quick: bool) -> None:
    """PASS/MISS per target; a quick (smoke) run judges nothing."""
    print("\ntargets:")
    for check in checks:
        status = "n/a " if quick else ("PASS" if check["pass"] else "MISS")
        print(f"  [{status}] {check['target']}: {check['measured']}")


def print_contention(load: dict, blocks: str, busy: bool) -> None:
    """How much CPU other processes took during the measurement (``load``: a ``CpuMonitor``
    summary), what that did to the timed ``blocks``, and a warning when the machine was ``busy``."""
    print(
        f"\nother processes used {load['other_processes_cpu_s']:.1f} CPU-s during {load['wall_s']:.0f} s of "
        f"measurement ({load['other_load_pct']:.1f}% of the machine); {blocks}"
    )
    if busy:
        print("WARNING: the machine was busy during the measurement; re-run on a quiet machine for final numbers")
