"""Micro-batching: concurrent requests share model and index calls instead of queuing one by one.

Requests ``await batcher.submit(item)``; one inference thread takes everything waiting (up to
``max_batch``) and hands the list to ``process`` in a single call, so 50 simultaneous text
queries become a few batched FAISS searches and one database join rather than 50 of each.

Why greedy rather than a fixed wait: a lone request is processed at once (no added latency at
concurrency 1); under load, requests arriving while a batch runs accumulate and form the next
batch by themselves. ``max_wait_s`` only applies once a second request is already waiting, to
let a burst fill the batch a little more.

Bounded: more than ``max_queue`` waiting requests get 503 ``service.busy`` with Retry-After instead of
piling up memory and latency. The event loop never runs inference; it only awaits futures.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from service.problems import ProblemError

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("service.batching")

_STOP = object()


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        process: Callable[[list[T]], Sequence[R | BaseException]],
        *,
        max_batch: int = 64,
        max_wait_s: float = 0.002,
        max_queue: int = 512,
        name: str = "inference",
        on_batch: Callable[[int, int], None] | None = None,
    ):
        """``process`` returns one result per item, in order; an exception instance in the list
        fails only that item. ``on_batch(batch_size, queue_depth)`` feeds the metrics."""
        self.process, self.max_batch, self.max_wait_s = process, max_batch, max_wait_s
        self.on_batch = on_batch
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._started:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._started = False

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.enqueue(item, future, loop)
        return await future

    def enqueue(self, item: T, future: asyncio.Future, loop: asyncio.AbstractEventLoop) -> None:
        """Queue ``item``; its result or error resolves ``future`` on ``loop``. Thread-safe: a
        decode thread hands an upload's views over directly, without a trip through the loop."""
        try:
            self._queue.put_nowait((item, future, loop))
        except queue.Full:
            raise ProblemError(
                "service.busy",
                f"{self._queue.maxsize} requests are already waiting for inference",
                headers={"Retry-After": "1"},
            ) from None

    # ------------------------------------------------------------------ the inference thread
    def _take_batch(self, first) -> list:
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if 1 < len(batch) < self.max_batch and self.max_wait_s > 0:
            deadline = time.perf_counter() + self.max_wait_s
            while len(batch) < self.max_batch:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = self._take_batch(first)
            stop = any(entry is _STOP for entry in batch)
            batch = [entry for entry in batch if entry is not _STOP]
            live = [(item, fut, loop) for item, fut, loop in batch if not fut.cancelled()]
            if self.on_batch is not None:
                self.on_batch(len(live), self._queue.qsize())
            if live:
                try:
                    results = list(self.process([item for item, _, _ in live]))
                    if len(results) != len(live):
                        raise RuntimeError(f"batch process returned {len(results)} results for {len(live)} items")
                except BaseException as exc:  # the whole batch failed: every caller hears why
                    log.exception("inference batch of %d failed", len(live))
                    results = [exc] * len(live)
                for (_, fut, loop), result in zip(live, results):
                    loop.call_soon_threadsafe(_resolve, fut, result)
            if stop:
                return


def _resolve(future: asyncio.Future, result) -> None:
    if future.cancelled():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
