"""Ingest jobs started over HTTP (``POST /v1/jobs/ingest``).

An ingest takes minutes to hours, so a request only *submits* it and clients poll the job.
Two backends, one :class:`JobInfo` shape:

* :class:`RQJobQueue` (``CLAPSEARCH_REDIS_URL`` set): jobs go through Redis to
  ``clapsearch-worker`` processes (RQ), anywhere that sees the same database and index folder.
  The API process never embeds, survives worker crashes, and replicas share one job list.
  A worker that publishes sends :func:`service.reload.notify_published` so replicas reload.
* :class:`LocalJobQueue` (no Redis, the embedded default): one background thread of the API
  process runs jobs one at a time; it tells the runtime through ``on_published``.

Paths are checked against ``CLAPSEARCH_ALLOWED_INGEST_ROOTS`` (:func:`check_ingest_path`)
before a job exists, and again when it runs: an API key must not be a way to read any folder
of the server.
"""

from __future__ import annotations

import logging
import os
import queue as queue_mod
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from indexer.errors import ClapSearchError
from service.cache import redact_url, redis_client, redis_errors
from service.problems import ProblemError

if TYPE_CHECKING:
    from service.settings import ServiceSettings

log = logging.getLogger("service.jobs")

JOB_TIMEOUT_S = 24 * 3600  # a big library on a slow disk may take most of a day
KEEP_S = 7 * 24 * 3600  # finished/failed jobs stay visible for a week
KEEP_IDS = 1000  # job ids listed (newest first) per queue
MAX_FAILURES = 50  # failures listed in a job result (the CLI shows all)
PROGRESS_EVERY_S = 0.5  # at most 2 progress writes per second
_LOCAL_KEEP = 200  # jobs remembered by a LocalJobQueue
MAX_PATH_CHARS = 4095  # PATH_MAX less the NUL: a longer path can name nothing


@dataclass(frozen=True)
class IngestJobSpec:
    path: str
    collection: str = "default"
    segments: bool = False
    prune: bool = False
    analyze: bool = False  # then tempo, key and loudness of files not analysed yet (indexer analyze)

    def __post_init__(self) -> None:
        # the core's one name rule, before a job exists (a bad name used to pass here, then
        # break every collection listing once the job created it)
        from indexer.store.catalog import check_collection_name

        check_collection_name(self.collection)


def empty_progress() -> dict:
    return {
        "discovered": 0,
        "discovery_done": False,
        "done": 0,
        "embedded": 0,
        "skipped": 0,
        "failed": 0,
        "audio_seconds": 0.0,
    }


class JobInfo(BaseModel):
    """One ingest job as the API shows it (the ``Job`` object of the HTTP contract)."""

    id: str
    status: Literal["queued", "running", "finished", "failed"]
    path: str
    collection: str
    segments: bool = False
    prune: bool = False
    analyze: bool = False
    progress: dict = Field(default_factory=empty_progress)
    result: dict | None = None
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


# ---------------------------------------------------------------------- paths
def _not_allowed(detail: str) -> ProblemError:
    return ProblemError("ingest.path_not_allowed", detail)


def check_ingest_path(path: str, roots: list[Path]) -> Path:
    """The real (symlink- and ``..``-free) path when it lies inside one of ``roots``.

    Containment is decided on real paths, so neither ``root/../etc`` nor a symlink inside a
    root pointing elsewhere gets out; it is checked before existence, so a refusal says
    nothing about what exists outside the roots.
    """
    if len(path) > MAX_PATH_CHARS:
        raise ProblemError("request.invalid", f"the path has {len(path)} characters; at most {MAX_PATH_CHARS}")
    try:
        path.encode("utf-8")  # JSON can carry lone surrogates; no job, log or reply can
    except UnicodeEncodeError:
        raise ProblemError("request.invalid", "the path is not valid Unicode (lone surrogates)") from None
    if not roots:
        raise _not_allowed(
            "HTTP ingest is disabled on this server: no folder is allowed. Set "
            "CLAPSEARCH_ALLOWED_INGEST_ROOTS (comma-separated folders) to enable it."
        )
    try:
        raw = Path(path)
        if not raw.is_absolute():
            raise _not_allowed(f"{path!r} is not an absolute path")
        target = Path(os.path.realpath(raw))
        real_roots = [Path(os.path.realpath(root)) for root in roots]
    except (ValueError, OSError) as exc:  # NUL bytes, loops, unreadable components
        raise _not_allowed(f"{path!r} is not a usable path ({exc})") from None
    if not any(target == root or root in target.parents for root in real_roots):
        allowed = ", ".join(str(r) for r in roots)
        raise _not_allowed(
            f"{path} is outside the folders HTTP ingest may read ({allowed}; CLAPSEARCH_ALLOWED_INGEST_ROOTS)"
        )
    try:
        exists = target.exists()
    except OSError:  # a component too long, not a folder, no permission ...
        exists = False
    if not exists:
        raise ProblemError("ingest.path_not_found", f"{path} does not exist")
    return target


# ---------------------------------------------------------------------- running one ingest
def progress_dict(stats) -> dict:
    return {
        "discovered": stats.discovered,
        "discovery_done": bool(stats.discovery_done),
        "done": stats.done,
        "embedded": stats.embedded,
        "skipped": stats.skipped,
        "failed": stats.failed,
        "audio_seconds": round(float(stats.audio_seconds), 3),
    }


def published_anything(result: dict) -> bool:
    """True when a job's result switched at least one index to a new version."""
    return any(
        p.get("mode") != "unchanged" and p.get("version") is not None for p in (result or {}).get("published", [])
    )


def execute_ingest(spec: IngestJobSpec, settings: ServiceSettings, report: Callable[[dict], None]) -> dict:
    """Run one ingest like ``indexer ingest`` would and return its summary (the job result).

    ``report`` gets progress dicts at most twice a second (it writes to Redis or a lock-held
    dict; the pipeline calls back far more often), and once more with the final counts.
    Core errors (``CollectionBusyError``, ``ModelMismatchError`` ...) propagate to the caller.
    """
    from indexer.ingest.pipeline import IngestOptions, run_ingest
    from indexer.store.catalog import SegmentSpec
    from indexer.store.store import Store

    # Confinement again, now: the submission check ran maybe hours ago, and a folder swapped for
    # a symlink since then must not get files outside the roots indexed. (Below the top folder
    # the walk enters no linked folder and takes no linked file, so this one check suffices.)
    roots = settings.allowed_ingest_roots
    if roots:
        check_ingest_path(spec.path, roots)
    elif not os.path.exists(spec.path):
        raise ProblemError("ingest.path_not_found", f"{spec.path} does not exist (any more)")
    last = [float("-inf")]

    def throttled(stats) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            report(progress_dict(stats))

    options = IngestOptions(
        paths=[spec.path],
        collection=spec.collection,
        prune=spec.prune,
        segments=SegmentSpec() if spec.segments else None,
    )
    store = Store.open(settings)
    try:
        outcome = run_ingest(store, options, progress=throttled)
        analysis = _analyze(store, spec) if spec.analyze else None
    finally:
        store.close()
    stats = outcome.stats
    report(progress_dict(stats))
    return {
        "collection": outcome.collection,
        "path": spec.path,
        "embedded": stats.embedded,
        "skipped": stats.skipped,
        "failed": stats.failed,
        "removed": stats.removed,
        "audio_seconds": round(float(stats.audio_seconds), 3),
        "seconds": round(float(outcome.seconds), 3),
        "analysis": analysis,
        "failures": [{"path": p, "code": c, "message": m} for p, c, m in outcome.failures[:MAX_FAILURES]],
        "failures_total": len(outcome.failures),
        "walk_errors": [{"path": p, "message": m} for p, m in outcome.walk_errors[:MAX_FAILURES]],
        "published": [
            {
                "kind": r.kind,
                "mode": r.mode,
                "version": r.version.version if r.version else None,
                "n_vectors": r.version.n_vectors if r.version else 0,
                "added": r.added,
                "removed": r.removed,
            }
            for r in outcome.published
        ],
    }


def _analyze(store, spec: IngestJobSpec) -> dict:
    """``indexer ingest --analyze``'s second step, the same core runner: what it did."""
    from indexer.analysis.run import analyze_collection

    report = analyze_collection(store, spec.collection)
    return {
        "analysed": report.analysed,
        "with_tempo": report.with_tempo,
        "with_key": report.with_key,
        "failed": report.failed,
        "seconds": round(report.seconds, 3),
    }


def describe_error(exc: BaseException) -> str:
    """A job's ``error``: ``code: message`` for core and problem errors, else ``Type: message``."""
    if isinstance(exc, ClapSearchError):
        return f"{exc.code}: {exc}"
    if isinstance(exc, ProblemError):
        return f"{exc.code}: {exc.detail or exc.title}"
    return f"{exc.__class__.__name__}: {exc}"


# ---------------------------------------------------------------------- queues
class JobQueue:
    """What the API needs from a job backend (``list`` is newest first)."""

    backend = "base"

    def submit(self, spec: IngestJobSpec) -> JobInfo:
        raise NotImplementedError

    def get(self, job_id: str) -> JobInfo | None:
        raise NotImplementedError

    def list(self, limit: int = 50) -> list[JobInfo]:
        raise NotImplementedError

    def status(self) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalJobQueue(JobQueue):
    """Jobs run one at a time in a thread of this process: no Redis, no worker to deploy.

    One at a time because two ingests of one collection would only meet its lock, and the
    decode processes of one ingest already use every core. Jobs live in memory only.
    """

    backend = "local"

    def __init__(self, settings: ServiceSettings, *, on_published: Callable[[str], None] | None = None):
        self.settings = settings
        self.on_published = on_published
        self._jobs: dict[str, JobInfo] = {}  # insertion order = submission order
        self._pending: queue_mod.Queue = queue_mod.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, spec: IngestJobSpec) -> JobInfo:
        job = JobInfo(id=uuid.uuid4().hex, status="queued", created_at=_now(), **asdict(spec))
        with self._lock:
            if self._closed:
                raise ProblemError("job.unavailable", "the service is stopping")
            self._jobs[job.id] = job
            ended = [j.id for j in self._jobs.values() if j.status in ("finished", "failed")]
            for old in ended[: max(0, len(self._jobs) - _LOCAL_KEEP)]:  # bounded memory
                del self._jobs[old]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ingest-jobs", daemon=True)
                self._thread.start()
        self._pending.put(job.id)
        return job.model_copy()

    def get(self, job_id: str) -> JobInfo | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.model_copy() if job else None

    def list(self, limit: int = 50) -> list[JobInfo]:
        with self._lock:
            return [job.model_copy() for job in reversed(self._jobs.values())][: max(0, limit)]

    def status(self) -> dict:
        with self._lock:
            queued = sum(1 for job in self._jobs.values() if job.status == "queued")
        return {
            "backend": "local",
            "state": "ok",
            "queued": queued,
            "detail": "no Redis: ingest jobs run one at a time inside the API process",
        }

    def close(self) -> None:
        """Stop taking jobs; queued ones are failed, a running ingest is left to finish (its
        thread is a daemon: a process exit stops it, and the next ingest redoes its files)."""
        with self._lock:
            self._closed = True
            for job_id, job in self._jobs.items():
                if job.status == "queued":
                    self._jobs[job_id] = job.model_copy(
                        update={
                            "status": "failed",
                            "error": "the service stopped before the job ran",
                            "ended_at": _now(),
                        }
                    )
        self._pending.put(None)
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    # ------------------------------------------------------------------ internals
    def _update(self, job_id: str, **fields) -> None:
        with self._lock:
            self._jobs[job_id] = self._jobs[job_id].model_copy(update=fields)

    def _run(self) -> None:
        while True:
            job_id = self._pending.get()
            if job_id is None:
                return
            with self._lock:
                job = self._jobs.get(job_id)
                if self._closed or job is None or job.status != "queued":
                    continue
            spec = IngestJobSpec(job.path, job.collection, job.segments, job.prune, job.analyze)
            self._update(job_id, status="running", started_at=_now())

            def progress(p: dict, job_id: str = job_id) -> None:
                self._update(job_id, progress=p)

            try:
                result = execute_ingest(spec, self.settings, progress)
            except Exception as exc:
                log.warning(
                    "ingest job %s (%s) failed: %s",
                    job_id,
                    spec.path,
                    describe_error(exc),
                    exc_info=not isinstance(exc, (ClapSearchError, ProblemError)),
                )
                self._update(job_id, status="failed", error=describe_error(exc), ended_at=_now())
                continue
            self._update(job_id, status="finished", result=result, ended_at=_now())
            if self.on_published is not None and published_anything(result):
                try:
                    self.on_published(spec.collection)
                except Exception:
                    log.exception("on_published(%r) failed after job %s", spec.collection, job_id)


# ---------------------------------------------------------------------- RQ
def run_ingest_job(spec: dict) -> dict:
    """The RQ job function (runs in ``clapsearch-worker``): settings come from the worker's
    own environment, so one queue can be served by workers on other hosts with their paths."""
    from rq import get_current_job

    from service.reload import notify_published
    from service.settings import WorkerSettings

    settings = WorkerSettings()
    job_spec = IngestJobSpec(**spec)
    job = get_current_job()

    def save(**meta) -> None:
        if job is None:  # called directly, outside a worker
            return
        job.meta.update(meta)
        try:
            job.save_meta()
        except Exception as exc:  # a progress write must never abort hours of ingest
            log.warning("could not save the state of job %s: %s", job.id, exc)

    try:  # execute_ingest re-checks the path against this worker's own roots when it has some
        result = execute_ingest(job_spec, settings, lambda progress: save(progress=progress))
    except Exception as exc:
        save(error=describe_error(exc))  # the clean message; RQ keeps the traceback
        raise
    save(result=result)  # read back by JobInfo without another round trip
    if published_anything(result):
        notify_published(settings, job_spec.collection)
    return result


# RQ's statuses not named here (queued, deferred, scheduled, ...) all mean "not started yet"
_RQ_STATUS = {
    "started": "running",
    "finished": "finished",
    "failed": "failed",
    "stopped": "failed",
    "canceled": "failed",
}


class RQJobQueue(JobQueue):
    """Jobs in Redis through RQ, run by ``clapsearch-worker``. Redis down: 503 job.unavailable."""

    backend = "rq"

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.name = settings.job_queue
        self.index_key = f"clapsearch:jobs:{self.name}"  # sorted set: job id -> submit time
        self._conn = None

    def _connection(self):
        if self._conn is None:
            # Submissions are rare: allow a loaded Redis a little longer than a cache lookup.
            timeout = self.settings.redis_timeout_s
            assert self.settings.redis_url is not None, "open_job_queue() picks RQ only with a Redis URL"
            self._conn = redis_client(
                self.settings.redis_url, connect_timeout_s=timeout, read_timeout_s=max(timeout, 2.0)
            )
        return self._conn

    def _queue(self):
        from rq import Queue

        return Queue(self.name, connection=self._connection())

    def _unavailable(self, exc: BaseException) -> ProblemError:
        log.warning(
            "job queue %s at %s unavailable: %s: %s",
            self.name,
            redact_url(self.settings.redis_url),
            exc.__class__.__name__,
            exc,
        )
        return ProblemError(
            "job.unavailable",
            f"Redis at {redact_url(self.settings.redis_url)} is not reachable; try again later",
            headers={"Retry-After": "5"},
        )

    def submit(self, spec: IngestJobSpec) -> JobInfo:
        spec_dict = asdict(spec)
        job_id = uuid.uuid4().hex
        try:
            pipe = self._connection().pipeline()
            pipe.zadd(self.index_key, {job_id: time.time()})
            pipe.zremrangebyrank(self.index_key, 0, -(KEEP_IDS + 1)).execute()
            job = self._queue().enqueue_call(
                run_ingest_job,
                args=(spec_dict,),
                timeout=JOB_TIMEOUT_S,
                result_ttl=KEEP_S,
                failure_ttl=KEEP_S,
                job_id=job_id,
                meta={"spec": spec_dict, "progress": empty_progress()},
                description=f"ingest {spec.path} into {spec.collection}",
            )
        except redis_errors() as exc:
            raise self._unavailable(exc) from None
        return self._info(job)

    def get(self, job_id: str) -> JobInfo | None:
        from rq.job import Job

        try:
            conn = self._connection()
            if conn.zscore(self.index_key, job_id) is None:  # only our ingest jobs, not any RQ job
                return None
            job = Job.fetch_many([job_id], connection=conn)[0]
            return None if job is None else self._info(job)
        except redis_errors() as exc:
            raise self._unavailable(exc) from None

    def list(self, limit: int = 50) -> list[JobInfo]:
        from rq.job import Job

        if limit <= 0:
            return []
        try:
            conn = self._connection()
            ids = [i.decode() if isinstance(i, bytes) else i for i in conn.zrevrange(self.index_key, 0, limit - 1)]
            jobs = Job.fetch_many(ids, connection=conn) if ids else []
            expired = [job_id for job_id, job in zip(ids, jobs) if job is None]
            if expired:
                conn.zrem(self.index_key, *expired)
            return [self._info(job) for job in jobs if job is not None]
        except redis_errors() as exc:
            raise self._unavailable(exc) from None

    def status(self) -> dict:
        from rq import Worker

        try:
            q = self._queue()
            queued = q.count
            workers = Worker.count(queue=q)
        except redis_errors() as exc:
            return {
                "backend": "rq",
                "state": "down",
                "queued": 0,
                "detail": f"{redact_url(self.settings.redis_url)}: {exc.__class__.__name__}: {exc}",
            }
        detail = f"queue {self.name!r} on {redact_url(self.settings.redis_url)}: {workers} worker(s)"
        if not workers:
            detail += "; no worker is running, start `clapsearch-worker`"
        return {"backend": "rq", "state": "ok", "queued": queued, "detail": detail}

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _info(self, job) -> JobInfo:
        meta = job.meta or {}
        spec = meta.get("spec") or {}
        raw = getattr(job.get_status(refresh=False), "value", None) or "queued"
        status = _RQ_STATUS.get(raw, "queued")
        result = error = None
        if status == "finished":
            result = meta.get("result") or job.return_value()
        elif status == "failed":
            error = meta.get("error") or self._failure_text(job, raw)
        return JobInfo(
            id=job.id,
            status=status,
            path=spec.get("path", ""),
            collection=spec.get("collection", "default"),
            segments=bool(spec.get("segments")),
            prune=bool(spec.get("prune")),
            analyze=bool(spec.get("analyze")),
            progress=meta.get("progress") or empty_progress(),
            result=result,
            error=error,
            created_at=_utc(job.created_at),
            started_at=_utc(job.started_at),
            ended_at=_utc(job.ended_at),
        )

    @staticmethod
    def _failure_text(job, raw_status) -> str:
        """The last line of the worker's traceback (timeouts, a killed work horse ...)."""
        lines = (getattr(job.latest_result(), "exc_string", None) or "").strip().splitlines()
        return lines[-1].strip() if lines else f"job {raw_status}"


def open_job_queue(settings: ServiceSettings, *, on_published: Callable[[str], None] | None = None) -> JobQueue:
    """RQ when Redis is configured (workers do the work), else jobs in this process."""
    if settings.redis_url:
        return RQJobQueue(settings)
    return LocalJobQueue(settings, on_published=on_published)
