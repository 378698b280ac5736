"""Ingest jobs: the path guard, the in-process queue, and the RQ path end to end (API-side
queue -> `python -m service.worker` subprocess -> published, announced, searchable index)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from indexer.store import versions
from service.jobs import IngestJobSpec, JobInfo, LocalJobQueue, RQJobQueue, check_ingest_path, open_job_queue
from service.problems import ProblemError
from service.reload import IndexWatcher
from service.settings import ServiceSettings
from tests.helpers import wait_until
from tests.indexer.library import write

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "clapsearch-sfx-v1"
DEAD = "redis://127.0.0.1:1/0"
JOB_KEYS = {
    "id",
    "status",
    "path",
    "collection",
    "segments",
    "prune",
    "analyze",
    "progress",
    "result",
    "error",
    "created_at",
    "started_at",
    "ended_at",
}


def _library(root: Path, n: int = 3) -> Path:
    for i in range(n):
        write(root / f"tone{i}.wav", 1.0, sr=16_000, freq=300.0 + 200 * i, seed=i)
    return root


def _settings(tmp_path: Path, **kw) -> ServiceSettings:
    kw.setdefault("redis_url", None)
    return ServiceSettings(
        home=tmp_path / "home",
        model=MODEL,
        database_url=None,
        index_dir=None,
        allowed_ingest_roots=[tmp_path / "lib"],
        **kw,
    )


def _wait_job(queue, job_id: str, timeout: float = 90.0) -> JobInfo:
    job = wait_until(
        lambda: (j := queue.get(job_id)) is not None and j.status in ("finished", "failed") and j, timeout, every_s=0.05
    )
    assert job, f"job {job_id} did not end: {queue.get(job_id)}"
    return job


def _assert_searchable(settings: ServiceSettings, n: int) -> None:
    from indexer.search import Searcher
    from indexer.store.store import Store

    store = Store.open(settings)
    try:
        hits = Searcher(store, "default").search_text("a tone", k=10)
        assert sorted(Path(h.path).name for h in hits) == [f"tone{i}.wav" for i in range(n)]
    finally:
        store.close()


# ---------------------------------------------------------------------- check_ingest_path
def test_check_ingest_path(tmp_path):
    root, outside = tmp_path / "lib", tmp_path / "private"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "a.wav").write_bytes(b"")
    (root / "escape").symlink_to(outside)
    roots = [root]

    assert check_ingest_path(str(root), roots) == root.resolve()
    assert check_ingest_path(str(root / "sub" / "a.wav"), roots) == (root / "sub" / "a.wav").resolve()
    assert check_ingest_path(str(root / "sub" / ".." / "sub"), roots) == (root / "sub").resolve()
    for bad in (root / ".." / "private", root / "escape", root / "escape" / "x", Path("/etc"), Path("lib/sub")):
        with pytest.raises(ProblemError) as err:
            check_ingest_path(str(bad), roots)
        assert (err.value.status, err.value.code) == (403, "ingest.path_not_allowed"), bad
    with pytest.raises(ProblemError) as err:
        check_ingest_path(str(root / "nope"), roots)
    assert (err.value.status, err.value.code) == (404, "ingest.path_not_found")
    with pytest.raises(ProblemError) as err:  # outside and missing: still 403, reveals nothing
        check_ingest_path(str(outside / "nope"), roots)
    assert err.value.status == 403
    with pytest.raises(ProblemError) as err:
        check_ingest_path(str(root), [])
    assert err.value.status == 403 and "CLAPSEARCH_ALLOWED_INGEST_ROOTS" in err.value.detail
    assert "disabled" in err.value.detail


# ---------------------------------------------------------------------- local queue
def test_local_queue_runs_an_ingest(tmp_path):
    lib = _library(tmp_path / "lib")
    settings = _settings(tmp_path)
    published: list = []
    queue = open_job_queue(settings, on_published=published.append)
    assert isinstance(queue, LocalJobQueue)
    try:
        job = queue.submit(IngestJobSpec(str(lib), segments=True))
        assert job.status in ("queued", "running") and job.created_at is not None and job.segments
        done = _wait_job(queue, job.id)
        assert done.status == "finished", done.error
        assert done.progress["done"] == 3 and done.progress["embedded"] == 3 and done.progress["discovery_done"]
        assert done.result["embedded"] == 3 and done.result["failed"] == 0 and done.result["failures"] == []
        assert [p["kind"] for p in done.result["published"]] == ["files", "segments"]
        assert done.result["published"][0]["version"] >= 1
        assert done.started_at <= done.ended_at
        assert set(done.model_dump(mode="json")) == JOB_KEYS
        assert published == ["default"]
        assert [j.id for j in queue.list()] == [job.id]
        assert queue.status()["backend"] == "local" and queue.status()["state"] == "ok"
        _assert_searchable(settings, 3)
    finally:
        queue.close()


def test_an_ingest_job_can_analyse_tempo_and_key(tmp_path):
    """``analyze: true`` runs ``indexer ingest --analyze``'s second step (the same core runner)."""
    pytest.importorskip("librosa")
    from tests.music_library import chord_progression, click_track, write_wav

    lib = tmp_path / "lib"
    write_wav(lib / "click_120.wav", click_track(120, 8))
    write_wav(lib / "a_minor.wav", chord_progression("A minor"))
    settings = _settings(tmp_path)
    queue = open_job_queue(settings)
    try:
        job = queue.submit(IngestJobSpec(str(lib), analyze=True))
        done = _wait_job(queue, job.id, timeout=180)
        assert done.status == "finished" and done.analyze, done.error
        analysis = done.result["analysis"]
        assert (analysis["analysed"], analysis["with_key"], analysis["failed"]) == (2, 1, 0)
        plain = _wait_job(queue, queue.submit(IngestJobSpec(str(lib))).id)
        assert plain.result["analysis"] is None and not plain.analyze
    finally:
        queue.close()


def test_local_queue_failures(tmp_path):
    lib = _library(tmp_path / "lib", 1)
    settings = _settings(tmp_path)
    published: list = []
    queue = LocalJobQueue(settings, on_published=published.append)
    try:
        with versions.collection_lock(settings.resolved_index_dir, "default"):  # another ingest
            busy = queue.submit(IngestJobSpec(str(lib)))
            busy_done = _wait_job(queue, busy.id)
        assert busy_done.status == "failed" and busy_done.error.startswith("store.busy:")
        assert busy_done.result is None and busy_done.ended_at is not None
        gone = queue.submit(IngestJobSpec(str(lib / "vanished")))
        gone_done = _wait_job(queue, gone.id)
        assert gone_done.status == "failed" and gone_done.error.startswith("ingest.path_not_found:")
        assert [j.id for j in queue.list()] == [gone.id, busy.id]  # newest first
        assert queue.get("no-such-job") is None
        assert published == []
    finally:
        queue.close()


# ---------------------------------------------------------------------- RQ
@pytest.fixture
def rq_settings(tmp_path, redis_url):
    settings = _settings(
        tmp_path, redis_url=redis_url, job_queue=f"test-ingest-{uuid.uuid4().hex[:8]}", reload_poll_s=60
    )
    yield settings
    from service.cache import redis_client

    raw = redis_client(redis_url, connect_timeout_s=1, read_timeout_s=2)
    job_ids = [i.decode() for i in raw.zrange(f"clapsearch:jobs:{settings.job_queue}", 0, -1)]
    keys = {f"clapsearch:jobs:{settings.job_queue}", *raw.scan_iter(match=f"rq:*{settings.job_queue}*")}
    raw.srem("rq:queues", f"rq:queue:{settings.job_queue}")
    for job_id in job_ids:
        keys.update(raw.scan_iter(match=f"rq:*{job_id}*"))
    raw.delete(*keys)
    raw.close()


def _run_worker(settings: ServiceSettings, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAPSEARCH_")}
    env.update(
        CLAPSEARCH_HOME=str(settings.home),
        CLAPSEARCH_MODEL=str(MODEL),
        CLAPSEARCH_REDIS_URL=settings.redis_url,
        CLAPSEARCH_JOB_QUEUE=settings.job_queue,
        CLAPSEARCH_ALLOWED_INGEST_ROOTS=",".join(str(r) for r in settings.allowed_ingest_roots),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "service.worker", "--burst", *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.needs_redis
def test_rq_end_to_end(tmp_path, rq_settings):
    lib = _library(tmp_path / "lib")
    seen: list = []
    watcher = IndexWatcher(rq_settings, seen.append)
    watcher.start()
    queue = open_job_queue(rq_settings)
    assert isinstance(queue, RQJobQueue)
    try:
        job = queue.submit(IngestJobSpec(str(lib)))
        assert job.status == "queued" and job.path == str(lib) and job.progress["done"] == 0
        status = queue.status()
        assert status["state"] == "ok" and status["queued"] == 1 and "no worker" in status["detail"]
        assert queue.get(job.id).status == "queued"
        assert wait_until(lambda: watcher.status()["subscribed"])

        _run_worker(rq_settings, "--simple")

        done = queue.get(job.id)
        assert done.status == "finished", done.error
        assert done.result["embedded"] == 3 and done.result["failed"] == 0
        assert done.progress["done"] == 3 and done.progress["embedded"] == 3
        assert done.created_at <= done.started_at <= done.ended_at
        assert set(done.model_dump(mode="json")) == JOB_KEYS
        assert [j.id for j in queue.list()] == [job.id]
        assert wait_until(lambda: "default" in seen)  # the worker announced the new version
        _assert_searchable(rq_settings, 3)
    finally:
        watcher.stop()
        queue.close()


@pytest.mark.needs_redis
def test_rq_failed_job_in_forking_worker(tmp_path, rq_settings):
    lib = _library(tmp_path / "lib", 1)
    queue = RQJobQueue(rq_settings)
    try:
        first = queue.submit(IngestJobSpec(str(lib)))
        second = queue.submit(IngestJobSpec(str(lib), collection="other"))
        assert [j.id for j in queue.list()] == [second.id, first.id]
        with versions.collection_lock(rq_settings.resolved_index_dir, "default"):
            with versions.collection_lock(rq_settings.resolved_index_dir, "other"):
                _run_worker(rq_settings)  # forking rq.Worker
        for job in (first, second):
            failed = queue.get(job.id)
            assert failed.status == "failed" and failed.error.startswith("store.busy:"), failed
            assert failed.result is None
        assert queue.get("not-a-job") is None
    finally:
        queue.close()


def test_rq_queue_with_dead_redis_is_503(tmp_path):
    queue = RQJobQueue(_settings(tmp_path, redis_url=DEAD, redis_timeout_s=0.2))
    for call in (lambda: queue.submit(IngestJobSpec("/x")), lambda: queue.get("abc"), queue.list):
        with pytest.raises(ProblemError) as err:
            call()
        assert (err.value.status, err.value.code) == (503, "job.unavailable")
    status = queue.status()
    assert status["backend"] == "rq" and status["state"] == "down"
    queue.close()


def test_worker_refuses_without_redis(monkeypatch, capsys):
    from service import worker

    monkeypatch.delenv("CLAPSEARCH_REDIS_URL", raising=False)
    with pytest.raises(SystemExit) as exit_:
        worker.main(["--burst"])
    assert exit_.value.code == 2
    assert "CLAPSEARCH_REDIS_URL" in capsys.readouterr().err
