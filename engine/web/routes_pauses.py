"""The API's queues and job types: list them and pause or resume one. A paused queue
keeps its jobs; a paused type's jobs are parked until it resumes."""

from __future__ import annotations

from fastapi import APIRouter

from engine.web import models as m
from engine.web.deps import AdminDep

router = APIRouter()


@router.get("/queues", tags=["queues"])
async def list_queues(admin: AdminDep) -> m.QueuePage:
    """Depth, consumers and pause of every queue seen."""
    rows = await admin.jobs.list_queues()
    return m.QueuePage(items=[m.QueueRow.model_validate(row, from_attributes=True) for row in rows])


@router.post("/queues/{queue}/pause", tags=["queues"])
async def pause(admin: AdminDep, queue: str, body: m.PauseBody | None = None) -> m.QueueChange:
    """Stop workers taking jobs from a queue; ``changed`` is false if it was paused."""
    reason = (body or m.PauseBody()).reason
    return m.QueueChange(queue=queue, changed=await admin.jobs.pause_queue(queue, reason))


@router.post("/queues/{queue}/resume", tags=["queues"])
async def unpause(admin: AdminDep, queue: str) -> m.QueueChange:
    """Let workers take jobs from a queue again; ``changed`` is false if it was not paused."""
    return m.QueueChange(queue=queue, changed=await admin.jobs.resume_queue(queue))


@router.get("/types", tags=["types"])
async def list_types(admin: AdminDep) -> m.TypePage:
    """Pause and parked jobs of every job type seen or paused."""
    rows = await admin.jobs.list_types()
    return m.TypePage(items=[m.TypeRow.model_validate(row, from_attributes=True) for row in rows])


@router.post("/types/{job_type}/pause", tags=["types"])
async def pause_type(
    admin: AdminDep, job_type: str, body: m.PauseBody | None = None
) -> m.TypeChange:
    """Stop workers running a job type (they park its jobs); ``changed`` is false if it
    was paused."""
    reason = (body or m.PauseBody()).reason
    changed = await admin.jobs.pause_type(job_type, reason)
    return m.TypeChange(job_type=job_type, changed=changed)


@router.post("/types/{job_type}/resume", tags=["types"])
async def resume_type(admin: AdminDep, job_type: str) -> m.TypeChange:
    """Let workers run a job type again and move its parked jobs back; ``changed`` is
    false if it was not paused."""
    changed, moved = await admin.jobs.resume_type(job_type)
    return m.TypeChange(job_type=job_type, changed=changed, moved=moved)
