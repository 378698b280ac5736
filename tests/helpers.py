"""Small helpers the test suites share: generated tones, polling for conditions that background
threads or processes make true (jobs, notices, reloads), whether a Redis answers, a free port."""

from __future__ import annotations

import socket
import subprocess
import time

import numpy as np


def tone(
    seconds: float,
    sr: int,
    *,
    freq: float | tuple[float, float] = 440.0,
    amplitude: float = 0.3,
    noise: float = 0.02,
    seed: int = 0,
    channels: int | None = None,
    dtype=np.float32,
) -> np.ndarray:
    """A sine of ``freq`` Hz plus white noise of standard deviation ``noise``, from ``seed``.
    A ``(low, high)`` pair draws the pitch from the seed (before the noise, so the same seed always
    gives the same file). Shape ``(n,)``, or ``(n, channels)`` with the same signal in each."""
    rng = np.random.default_rng(seed)
    if isinstance(freq, tuple):
        freq = rng.uniform(*freq)
    t = np.arange(int(seconds * sr)) / sr
    x = amplitude * np.sin(2 * np.pi * freq * t)
    if noise:
        x = x + noise * rng.standard_normal(t.size)
    if channels is not None:
        x = np.repeat(x[:, None], channels, axis=1)
    return x.astype(dtype)


def wav_bytes(seconds: float = 1.0, sr: int = 16_000) -> bytes:
    """A 16-bit WAV of a clean ``tone``, as an upload's bytes."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, tone(seconds, sr, noise=0), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def wait_until(predicate, timeout_s: float = 10.0, every_s: float = 0.02):
    """The first truthy value of ``predicate()`` within ``timeout_s``, else its last (falsy) value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    return predicate()


def redis_error(url: str, timeout_s: float = 3.0) -> Exception | None:
    """Why the Redis at ``url`` does not answer a ping, or None when it does."""
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s)
        client.ping()
        client.close()
    except Exception as exc:  # no client library or any connection failure: not usable here
        return exc
    return None


def run_captured(command, **kwargs) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` with stdout and stderr captured as text, for the assertion messages."""
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def run_indexer(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``indexer ARGS`` in a fresh interpreter, as a user's shell runs it (its own stdout, stderr and exit code)."""
    import os
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return run_captured([sys.executable, "-m", "indexer.cli.run", *args], env=env, timeout=timeout, cwd=repo)


def stored_vectors(store, collection: str = "default") -> dict[str, np.ndarray]:
    """Every file vector a Store holds for ``collection``, by file path."""
    from indexer.store import catalog, vector_rows

    col = store.collection(collection)
    paths = dict(catalog.iter_file_paths(store.db, col.id))
    return {
        paths[int(i)]: v for ids, vecs in vector_rows.iter_vectors(store.db, col.id, "files") for i, v in zip(ids, vecs)
    }


def reap(process: subprocess.Popen) -> None:
    """Kill ``process`` if a failed test left it running, and close its stderr pipe."""
    if process.poll() is None:
        process.kill()
        process.wait(10)
    if process.stderr is not None:
        process.stderr.close()


def free_port() -> int:
    """A loopback TCP port nothing listens on (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unavailable(reason: str):
    """Skip a test whose real dependency (a server, a browser) is missing here; fail it instead
    under CLAPSEARCH_REQUIRE_SERVICES=1, where CI must exercise the real thing."""
    import os

    import pytest

    if os.environ.get("CLAPSEARCH_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (CLAPSEARCH_REQUIRE_SERVICES=1: CI must exercise the real component)")
    pytest.skip(reason)
