"""SIGTERM ends an idle ``clapsearch-worker`` within seconds even when Redis froze at the same
moment (issue 16, defect 11): before, the stop bookkeeping waited RQ's socket timeout (minutes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.helpers import reap, wait_until
from tests.service.faults import TcpProxy

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "clapsearch-sfx-v1"


@pytest.mark.needs_redis
@pytest.mark.parametrize("mode", [[], ["--simple"]], ids=["forking", "simple"])
def test_sigterm_stops_the_worker_promptly_when_redis_freezes(redis_url, tmp_path, mode):
    import redis
    from rq import Queue, Worker

    parts = urlsplit(redis_url)
    queue = f"test-stop-{uuid.uuid4().hex[:8]}"
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        via_proxy = f"redis://127.0.0.1:{proxy.port}{parts.path or '/0'}"
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "CLAPSEARCH_HOME": str(tmp_path / "home"),
            "CLAPSEARCH_MODEL": str(MODEL),
            "CLAPSEARCH_REDIS_URL": via_proxy,
            "CLAPSEARCH_JOB_QUEUE": queue,
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "service.worker", *mode],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        direct = redis.Redis.from_url(redis_url)
        try:
            registered = wait_until(lambda: Worker.count(queue=Queue(queue, connection=direct)) > 0, 60.0)
            assert registered, "the worker never registered"
            time.sleep(0.5)  # let it block in its dequeue
            proxy.freeze()
            worker.send_signal(signal.SIGTERM)
            started = time.monotonic()
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                pytest.fail("clapsearch-worker ignored SIGTERM for 10 s with Redis frozen")
            assert time.monotonic() - started < 8
        finally:
            reap(worker)
            for key in direct.scan_iter(f"rq:*{queue}*"):
                direct.delete(key)
            direct.close()
