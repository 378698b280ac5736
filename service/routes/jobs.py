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
from service.routes.body import BodyFields, Fields, body_doc
from service.schemas import IngestRequest, JobList

if TYPE_CHECKING:
    from service.runtime import Runtime

router = APIRouter(tags=["jobs"])


# list pages count at most this many recent jobs (the queue keeps finished jobs for a while only)
JOBS_COUNTED = 1000


@router.post(
    "/v1/jobs/ingest",
    response_model=JobInfo,
    status_code=202,
    summary="Start an ingest job",
    openapi_extra=body_doc(IngestRequest, required=True),
)
async def submit(request: Request, fields: Fields = BodyFields):
    rt: Runtime = request.app.state.runtime
    body = fields.parse(IngestRequest)
    await run_in_threadpool(check_ingest_path, body.path, rt.settings.allowed_ingest_roots)
    # catalogue the path as the user wrote it (absolute, symlinks kept), as `indexer ingest` does,
    # so the same file never appears under two names
    if body.analyze:
        from indexer.analysis.musical import librosa_module

        librosa_module()  # no librosa on this server: refused now, not after the ingest
    spec = IngestJobSpec(
        path=os.path.abspath(body.path),
        collection=body.collection,
        segments=body.segments,
        prune=body.prune,
        analyze=body.analyze,
    )
    return await run_in_threadpool(rt.jobs.submit, spec)


@router.get("/v1/jobs", response_model=JobList, summary="Recent ingest jobs, newest first")
async def list_jobs(
    request: Request, limit: int = Query(20, ge=1, le=200), offset: int = Query(0, ge=0, le=JOBS_COUNTED)
):
    jobs = await run_in_threadpool(request.app.state.runtime.jobs.list, JOBS_COUNTED)
    return {"items": jobs[offset : offset + limit], "total": len(jobs), "limit": limit, "offset": offset}


@router.get("/v1/jobs/{job_id}", response_model=JobInfo, summary="An ingest job's progress")
async def get_job(request: Request, job_id: str):
    job = await run_in_threadpool(request.app.state.runtime.jobs.get, job_id)
    if job is None:
        raise ProblemError("job.not_found", f"no ingest job {job_id!r}")
    return job
