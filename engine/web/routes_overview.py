"""The API's overview of a namespace: the workers, the audit log and the state counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from engine.filters import DeadFilter
from engine.states import JobState
from engine.web import models as m
from engine.web.deps import AdminDep, Limit

router = APIRouter()


@router.get("/workers", tags=["workers"])
async def list_workers(admin: AdminDep) -> m.WorkerPage:
    """Workers seen in the last day, alive first: host, version, queues, job types."""
    rows = await admin.list_workers()
    return m.WorkerPage(
        items=[m.WorkerRow.model_validate(row, from_attributes=True) for row in rows]
    )


@router.get("/audit", tags=["audit"])
async def audit(
    admin: AdminDep,
    limit: Limit = 50,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> m.AuditPage:
    """Who did what, newest first: every requeue, delete, purge, pause, resume, stop and
    login, with the client address; a bulk operation's entry counts as it goes."""
    rows = await admin.audit_log(limit, before_id)
    more = rows[-1].id if len(rows) == limit else None
    items = [m.AuditEntry.model_validate(row, from_attributes=True) for row in rows]
    return m.AuditPage(items=items, next_before_id=more)


@router.get("/stats", tags=["stats"])
async def stats(admin: AdminDep) -> m.Stats:
    """Jobs per state and dead letters waiting."""
    counts = await admin.jobs.counts()
    return m.Stats(
        jobs={s.value: counts.get(s.value, 0) for s in JobState},
        dead_letters=await admin.count(DeadFilter()),
    )
