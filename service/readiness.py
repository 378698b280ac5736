"""Dependency checks for ``/readyz`` that never block the event loop.

A probe must answer fast whatever the dependencies do: a frozen Redis (SIGSTOP) or a
PostgreSQL that drops packets does not refuse, it just never answers, and a check that waits on
it inside the request stalls every other request on the event loop. So each dependency is
checked by its own daemon thread, every ``interval_s``, and ``/readyz`` only reads the last
answers. A check still running after ``budget_s`` counts as down (a hung dependency is not
ready), without waiting for it to time out.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Check = Callable[[], dict]


@dataclass(frozen=True)
class Dependency:
    name: str
    check: Check  # returns {"state": "ok"|"down"|"disabled", "detail": str}; may raise or hang
    required: bool  # down -> the replica is not ready (else reported only)


class DependencyChecks:
    def __init__(self, dependencies: list[Dependency], *, interval_s: float, budget_s: float):
        self.dependencies = dependencies
        self.interval_s = interval_s
        self.budget_s = budget_s
        self._results: dict[str, dict] = {}
        self._running_since: dict[str, float] = {}  # name -> monotonic start of the check in flight
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for dep in self.dependencies:
            thread = threading.Thread(target=self._loop, args=(dep,), name=f"ready-{dep.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        # daemon threads: one stuck in a hung call must not hold up shutdown
        self._stop.set()

    def _loop(self, dep: Dependency) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._running_since[dep.name] = time.monotonic()
            started = time.perf_counter()
            try:
                result = dict(dep.check())
            except Exception as exc:
                result = {"state": "down", "detail": f"{exc.__class__.__name__}: {_first_line(exc)}"}
            result.setdefault("took_ms", round((time.perf_counter() - started) * 1000, 1))
            with self._lock:
                self._results[dep.name] = result
                self._running_since.pop(dep.name, None)
            self._stop.wait(self.interval_s)

    def snapshot(self) -> dict[str, dict]:
        """The last answer of every dependency; a check in flight for over ``budget_s`` is down."""
        now = time.monotonic()
        out: dict[str, dict] = {}
        with self._lock:
            for dep in self.dependencies:
                since = self._running_since.get(dep.name)
                result = self._results.get(dep.name)
                if since is not None and now - since > self.budget_s:
                    out[dep.name] = {"state": "down", "detail": f"no answer for {now - since:.1f} s"}
                elif result is None:
                    out[dep.name] = {"state": "unknown", "detail": "not checked yet"}
                else:
                    out[dep.name] = dict(result)
        return out

    def failing(self, snapshot: dict[str, dict]) -> list[str]:
        """Required dependencies that are not ok (unknown counts: readiness is never assumed)."""
        return [dep.name for dep in self.dependencies if dep.required and snapshot[dep.name]["state"] != "ok"]

    async def settled(self) -> None:
        """Wait (without blocking the loop) until every dependency has answered once or is
        overdue, at most ``budget_s``: a probe right after start sees real answers."""
        deadline = time.monotonic() + self.budget_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._results) == len(self.dependencies):
                    return
            await asyncio.sleep(0.01)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
