"""Micro-batching: concurrent requests share inference calls, failures stay with their item,
the queue is bounded; through the app, concurrent searches are batched and answer exactly what
each query answers alone."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest

from service.batching import MicroBatcher
from service.problems import ProblemError
from tests.helpers import wait_until
from tests.service.conftest import MODEL, metric_samples, service_settings


class Recorder:
    """A ``process`` that records its batches; optionally holds the first call on a gate."""

    def __init__(self, fn=lambda x: x * 2, *, sleep_s: float = 0.0, gated: bool = False):
        self.fn, self.sleep_s = fn, sleep_s
        self.batches: list[list] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def __call__(self, items):
        self.batches.append(list(items))
        self.entered.set()
        self.gate.wait(10)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return [self.fn(x) for x in items]


def run(coro_fn, batcher: MicroBatcher):
    async def main():
        batcher.start()
        try:
            return await asyncio.wait_for(coro_fn(), timeout=30)
        finally:
            batcher.stop()

    return asyncio.run(main())


async def _until(predicate, timeout_s: float = 10.0) -> None:
    # polled from a thread, so that the event loop under test keeps running meanwhile
    assert await asyncio.to_thread(wait_until, predicate, timeout_s, 0.005), "condition never became true"


# ----------------------------------------------------------------------------- MicroBatcher


def test_concurrent_submits_share_calls_and_each_gets_its_own_result():
    recorder = Recorder(sleep_s=0.01)
    sizes: list[int] = []
    batcher = MicroBatcher(recorder, max_batch=64, max_wait_s=0.002, on_batch=lambda n, depth: sizes.append(n))

    async def go():
        return await asyncio.gather(*(batcher.submit(i) for i in range(50)))

    results = run(go, batcher)
    assert results == [i * 2 for i in range(50)]
    assert len(recorder.batches) < 50
    assert sorted(x for batch in recorder.batches for x in batch) == list(range(50))  # each item once
    assert max(len(b) for b in recorder.batches) > 1
    assert sizes == [len(b) for b in recorder.batches]


def test_batches_never_exceed_max_batch():
    recorder = Recorder(gated=True)
    batcher = MicroBatcher(recorder, max_batch=8, max_wait_s=0.0)

    async def go():
        first = asyncio.ensure_future(batcher.submit(-1))
        await _until(recorder.entered.is_set)
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(30)]
        await _until(lambda: batcher.depth == 30)
        recorder.gate.set()
        return await asyncio.gather(first, *rest)

    results = run(go, batcher)
    assert results == [-2] + [i * 2 for i in range(30)]
    assert [len(b) for b in recorder.batches] == [1, 8, 8, 8, 6]


def test_a_lone_request_does_not_wait_for_company():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_batch=64, max_wait_s=60.0)  # a wait would be a minute

    async def go():
        return await asyncio.wait_for(batcher.submit(21), timeout=10)

    assert run(go, batcher) == 42
    assert recorder.batches == [[21]]


def test_an_exception_in_the_results_fails_only_its_item():
    def fn(x):
        return ValueError(f"bad item {x}") if x == 3 else x + 100

    recorder = Recorder(fn, gated=True)
    batcher = MicroBatcher(recorder, max_batch=64, max_wait_s=0.0)

    async def go():
        first = asyncio.ensure_future(batcher.submit(0))
        await _until(recorder.entered.is_set)
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 6)]
        await _until(lambda: batcher.depth == 5)
        recorder.gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = run(go, batcher)
    assert [len(b) for b in recorder.batches] == [1, 5]  # item 3 shared a batch with the others
    assert results[:3] == [100, 101, 102] and results[4:] == [104, 105]
    assert isinstance(results[3], ValueError) and str(results[3]) == "bad item 3"


def test_a_raising_process_fails_its_whole_batch_and_the_batcher_carries_on():
    class Boom(Exception):
        pass

    def process(items):
        if "gate" in items:
            entered.set()
            gate.wait(10)
            return items
        if "bad" in items:
            raise Boom("the model fell over")
        return [x.upper() for x in items]

    entered, gate = threading.Event(), threading.Event()
    batcher = MicroBatcher(process, max_batch=64, max_wait_s=0.0)

    async def go():
        first = asyncio.ensure_future(batcher.submit("gate"))
        await _until(entered.is_set)
        same_batch = [asyncio.ensure_future(batcher.submit(x)) for x in ("a", "bad", "b")]
        await _until(lambda: batcher.depth == 3)
        gate.set()
        done = await asyncio.gather(first, *same_batch, return_exceptions=True)
        later = await batcher.submit("c")
        return done, later

    (gated, *failed), later = run(go, batcher)
    assert gated == "gate"
    assert all(isinstance(r, Boom) and str(r) == "the model fell over" for r in failed), failed
    assert later == "C"


def test_a_process_returning_the_wrong_number_of_results_fails_the_batch():
    batcher = MicroBatcher(lambda items: items[:-1], max_batch=64, max_wait_s=0.0)

    async def go():
        return await asyncio.gather(batcher.submit(1), return_exceptions=True)

    (result,) = run(go, batcher)
    assert isinstance(result, RuntimeError) and "results" in str(result)


def test_a_full_queue_is_503_busy():
    recorder = Recorder(gated=True)
    batcher = MicroBatcher(recorder, max_batch=64, max_wait_s=0.0, max_queue=2)

    async def go():
        first = asyncio.ensure_future(batcher.submit(0))
        await _until(recorder.entered.is_set)
        queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
        await _until(lambda: batcher.depth == 2)
        with pytest.raises(ProblemError) as refused:
            await batcher.submit(3)
        recorder.gate.set()
        return refused.value, await asyncio.gather(first, *queued)

    refused, results = run(go, batcher)
    assert refused.status == 503 and refused.code == "service.busy"
    assert refused.headers.get("Retry-After") == "1"
    assert results == [0, 2, 4]  # the queued ones were still answered


def test_items_enqueued_from_another_thread_resolve_on_the_loop_and_cancelled_ones_are_skipped():
    """A decode thread hands an upload's views straight to the inference thread (``enqueue``);
    the answer arrives on the caller's loop, and an item whose caller gave up is not processed."""
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_batch=64, max_wait_s=0.0)

    async def go():
        loop = asyncio.get_running_loop()
        wanted, abandoned = loop.create_future(), loop.create_future()
        abandoned.cancel()
        await asyncio.to_thread(batcher.enqueue, 7, abandoned, loop)
        await asyncio.to_thread(batcher.enqueue, 21, wanted, loop)
        return await wanted

    assert run(go, batcher) == 42
    assert [x for batch in recorder.batches for x in batch] == [21]


def test_busy_is_a_503_problem_through_the_app(ingested_home):
    """The app answers a full inference queue with a 503 problem and Retry-After."""
    from service.app import create_app

    async def go():
        app = create_app(service_settings(ingested_home, queue_max=1))
        async with app.router.lifespan_context(app):
            batcher = app.state.runtime.batcher
            entered, release = threading.Event(), threading.Event()
            real = batcher.process

            def gated(items):
                entered.set()
                release.wait(10)
                return real(items)

            batcher.process = gated
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                first = asyncio.ensure_future(http.get("/v1/search", params={"q": "one"}))
                await _until(entered.is_set)  # being processed: the queue is empty
                second = asyncio.ensure_future(http.get("/v1/search", params={"q": "two"}))
                await _until(lambda: batcher.depth == 1)  # waiting: the queue is full
                third = await http.get("/v1/search", params={"q": "three"})
                release.set()
                return third, await first, await second

    third, first, second = asyncio.run(asyncio.wait_for(go(), timeout=60))
    assert first.status_code == 200 and second.status_code == 200
    assert third.status_code == 503
    assert third.json()["code"] == "service.busy" and third.headers["retry-after"] == "1"
    assert third.headers["content-type"].startswith("application/problem+json")


# ----------------------------------------------------------------------------- the engine


@pytest.fixture(scope="module")
def encoder():
    from indexer.models.encoder import ClapEncoder

    return ClapEncoder.open(MODEL)


def test_text_vectors_are_the_same_alone_or_batched(encoder):
    """Each request of a batch gets its own text's vector, equal to the lone query's to float32
    rounding. (Not bit-identical, whatever service/inference.py's docstring says: texts of equal
    token length share one ONNX call, and a batch of 2 runs other kernels than a batch of 1.)"""
    from service.inference import EmbedTexts, InferenceEngine
    from service.metrics import Metrics

    engine = InferenceEngine(encoder, Metrics())
    texts = ["dog barking", "rain on a roof", "a car engine starting", "dog barking", "birds", "a cat"]
    alone = np.stack([engine([EmbedTexts([t])])[0][0] for t in texts])
    together = engine([EmbedTexts([t]) for t in texts] + [EmbedTexts(texts[::-1])])
    for i, vector in enumerate(together[:-1]):
        np.testing.assert_allclose(vector[0], alone[i], atol=1e-6)
    np.testing.assert_allclose(together[-1], alone[::-1], atol=1e-6)
    np.testing.assert_array_equal(together[0], together[3])  # the same text, one vector
    assert float(alone[0] @ alone[1]) < 0.99  # different texts differ


# ----------------------------------------------------------------------------- through the app

QUERIES = [
    "dog barking",
    "rain falling on a roof",
    "a high beep",
    "a low hum",
    "birds singing",
    "a car engine",
    "wind",
    "a bell",
    "footsteps",
    "a sine wave",
]


def test_concurrent_searches_are_batched_and_equal_each_query_alone(ingested_home):
    from service.app import create_app

    async def go():
        app = create_app(service_settings(ingested_home))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

                async def search(q):
                    response = await http.get("/v1/search", params={"q": q, "limit": 100})
                    assert response.status_code == 200, response.text
                    return [(h["id"], h["score"]) for h in response.json()["items"]]

                alone = {q: await search(q) for q in QUERIES}
                before = metric_samples((await http.get("/metrics")).text, "clapsearch_batch_size_count")
                together = await asyncio.gather(*(search(QUERIES[i % len(QUERIES)]) for i in range(50)))
                metrics = (await http.get("/metrics")).text
                return alone, together, before, metrics

    alone, together, before, metrics = asyncio.run(asyncio.wait_for(go(), timeout=120))
    for i, hits in enumerate(together):
        expected = alone[QUERIES[i % len(QUERIES)]]
        assert [h for h, _ in hits] == [h for h, _ in expected]
        np.testing.assert_allclose([s for _, s in hits], [s for _, s in expected], atol=2e-6)
    count = metric_samples(metrics, "clapsearch_batch_size_count")[()] - before[()]
    total = metric_samples(metrics, "clapsearch_batch_size_sum")[()]
    ones = metric_samples(metrics, "clapsearch_batch_size_bucket")[(("le", "1.0"),)]
    assert 0 < count < 50  # 50 searches, fewer inference batches
    assert total >= len(QUERIES) + 50  # every search went through the batcher
    assert ones < metric_samples(metrics, "clapsearch_batch_size_count")[()]  # some batch held > 1
