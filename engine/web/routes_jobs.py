"""The API's jobs: list and show them, say why one was suspended, list its failed
attempts, and suspend, cancel
or resume one (the rules are :class:`Lifecycle`'s)."""

from __future__ import annotations

from fastapi import APIRouter

from engine.states import JobState
from engine.web import models as m
from engine.web.deps import AdminDep, JobId, Limit, Name
from engine.web.errors import CONFLICT, NOT_FOUND

router = APIRouter()


@router.get("/jobs", tags=["jobs"])
async def list_jobs(
    admin: AdminDep,
    state: JobState | None = None,
    type: Name = None,
    queue: Name = None,
    limit: Limit = 50,
) -> m.JobPage:
    """Jobs, most recently updated first."""
    rows = await admin.jobs.list_jobs(state=state, job_type=type, queue=queue, limit=limit)
    return m.JobPage(items=[m.JobRow.model_validate(row, from_attributes=True) for row in rows])


@router.get("/jobs/{job_id:path}/cause", tags=["jobs"], responses=CONFLICT)
async def cause(admin: AdminDep, job_id: JobId) -> m.Cause:
    """Why a suspended job stopped: 'Requested by user', or the exception and traceback."""
    return m.Cause.model_validate(await admin.jobs.cause(job_id), from_attributes=True)


@router.get("/jobs/{job_id:path}/attempts", tags=["jobs"], responses=NOT_FOUND)
async def attempts(admin: AdminDep, job_id: JobId) -> m.AttemptPage:
    """Every failed attempt of the job (retrying, dead, suspended) with its error and time,
    oldest first; the job row keeps only the last error."""
    rows = await admin.jobs.attempts(job_id)
    if not rows:
        await admin.jobs.show(job_id)  # 404 for a job never tracked (or pruned)
    return m.AttemptPage(items=[m.AttemptRow.model_validate(r, from_attributes=True) for r in rows])


@router.get("/jobs/{job_id:path}", tags=["jobs"], responses=NOT_FOUND)
async def show_job(admin: AdminDep, job_id: JobId) -> m.JobDetail:
    return m.JobDetail.model_validate(await admin.jobs.show(job_id), from_attributes=True)


@router.post("/jobs/{job_id:path}/suspend", tags=["jobs"], responses=CONFLICT)
async def suspend(admin: AdminDep, job_id: JobId, body: m.StopBody | None = None) -> m.JobDetail:
    """Stop a pending, running or retrying job, keeping its checkpoint."""
    body = body or m.StopBody()
    row = await admin.jobs.suspend(job_id, body.reason, generation=body.generation)
    return m.JobDetail.model_validate(row, from_attributes=True)


@router.post("/jobs/{job_id:path}/cancel", tags=["jobs"], responses=CONFLICT)
async def cancel(admin: AdminDep, job_id: JobId, body: m.StopBody | None = None) -> m.JobDetail:
    """Stop a job for good."""
    body = body or m.StopBody()
    row = await admin.jobs.cancel(job_id, body.reason, generation=body.generation)
    return m.JobDetail.model_validate(row, from_attributes=True)


@router.post("/jobs/{job_id:path}/resume", tags=["jobs"], responses=CONFLICT)
async def resume(admin: AdminDep, job_id: JobId, body: m.ResumeBody | None = None) -> m.JobDetail:
    """Send a suspended job back to its queue; a ``payload`` given replaces the old one."""
    body = body or m.ResumeBody()
    row = await admin.jobs.resume(
        job_id,
        mode=body.mode,
        retries=body.retries,
        payload=body.payload,
        replace_payload="payload" in body.model_fields_set,
        generation=body.generation,
    )
    return m.JobDetail.model_validate(row, from_attributes=True)
