"""Ingest jobs over HTTP: submit a path under an allowed root, poll its progress.

With Redis the job goes onto an RQ queue and a ``clapsearch-worker`` runs it; without, it runs
in a background thread of this process. Either way the API stays responsive and the new index
version is hot-reloaded by every replica when the job publishes it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from service.jobs import IngestJobSpec, JobInfo, check_ingest_path
from service.problems import ProblemError
from service.schemas import IngestRequest

if TYPE_CHECKING:
    from service.runtime import Runtime

router = APIRouter(tags=["jobs"])


@router.post("/v1/jobs/ingest", response_model=JobInfo, status_code=202, summary="Start an ingest job")
async def submit(request: Request, body: IngestRequest):
    rt: Runtime = request.app.state.runtime
    await run_in_threadpool(check_ingest_path, body.path, rt.settings.allowed_ingest_roots)
    # catalogue the path as the user wrote it (absolute, symlinks kept), as `indexer ingest` does,
    # so the same file never appears under two names
    spec = IngestJobSpec(path=os.path.abspath(body.path), collection=body.collection, segments=body.segments, prune=body.prune)
    return await run_in_threadpool(rt.jobs.submit, spec)


@router.get("/v1/jobs", response_model=list[JobInfo], summary="Recent ingest jobs")
async def list_jobs(request: Request, limit: int = Query(20, ge=1, le=200)):
    return await run_in_threadpool(request.app.state.runtime.jobs.list, limit)


@router.get("/v1/jobs/{job_id}", response_model=JobInfo, summary="An ingest job's progress")
async def get_job(request: Request, job_id: str):
    job = await run_in_threadpool(request.app.state.runtime.jobs.get, job_id)
    if job is None:
        raise ProblemError("job.not_found", f"no ingest job {job_id!r}")
    return job
