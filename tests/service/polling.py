"""Polling for conditions that background threads or processes make true (jobs, notices, reloads)."""

from __future__ import annotations

import time


def wait_until(predicate, timeout_s: float = 10.0, every_s: float = 0.02):
    """The first truthy value of ``predicate()`` within ``timeout_s``, else its last (falsy) value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    return predicate()
