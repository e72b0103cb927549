"""The API's dead letters: list, show, requeue, delete and purge them, and the
work-items retry kept for older clients. Named ids that none of an action could move
are 404 or 409, as :meth:`Admin.why_not` says."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from engine.filters import DeadFilter
from engine.states import DeadStatus, RequeueMode
from engine.web import models as m
from engine.web.deps import AdminDep, JobId, Limit, Name
from engine.web.errors import CONFLICT, NOT_FOUND

router = APIRouter()


@router.get("/dead-letters", tags=["dead letters"])
async def list_dead(
    admin: AdminDep,
    type: Name = None,
    queue: Name = None,
    error_type: Name = None,
    error: Annotated[
        str | None, Query(max_length=m.MAX_TEXT, description="Substring of the message.")
    ] = None,
    since: Annotated[
        str | None,
        Query(
            max_length=m.MAX_AGE,
            json_schema_extra={"pattern": m.AGE},
            description="Age: 2h, 30d.",
        ),
    ] = None,
    after: m.IsoTime | None = None,
    before: m.IsoTime | None = None,
    payload: Annotated[
        str | None, Query(max_length=m.MAX_PAYLOAD_FILTER, description=m.PAYLOAD)
    ] = None,
    status: Annotated[str, Query(pattern="^(dead|requeue_pending|requeued|deleted|all)$")] = (
        "dead"
    ),
    limit: Limit = 50,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> m.DeadLetterPage:
    """Dead letters, newest first; page with ``before_id``."""
    wanted = None if status == "all" else DeadStatus(status)
    query = m.DeadFilterBody(
        type=type, queue=queue, error_type=error_type, error=error, since=since,
        after=after, before=before, payload=payload,
    )  # fmt: skip
    selector = query.to_filter(wanted)
    rows = await admin.list_dead(selector, limit=limit, before_id=before_id)
    more = rows[-1].id if len(rows) == limit else None
    items = [m.DeadLetterRow.model_validate(row, from_attributes=True) for row in rows]
    return m.DeadLetterPage(items=items, next_before_id=more)


@router.get("/dead-letters/{job_id:path}", tags=["dead letters"], responses=NOT_FOUND)
async def show_dead(admin: AdminDep, job_id: JobId) -> list[m.DeadLetterDetail]:
    """Every death of a job, oldest generation first, with tracebacks."""
    deaths = await admin.show(job_id)
    return [m.DeadLetterDetail.model_validate(d, from_attributes=True) for d in deaths]


@router.post("/dead-letters/requeue", tags=["dead letters"], responses=CONFLICT)
async def requeue(admin: AdminDep, body: m.RequeueBody) -> m.Total:
    """Move dead jobs back to their queues as a new generation; named ids of which none
    could be moved are 404 (unknown) or 409 (no longer dead)."""
    selector = body.selector()
    if body.dry_run:
        return m.Total(total=await admin.count(selector))
    moved = await admin.requeue(selector, retries=body.retries, mode=body.mode)
    if body.ids and moved == 0:
        raise await admin.why_not(body.ids[0], "requeue")
    return m.Total(total=moved)


@router.post("/dead-letters/delete", tags=["dead letters"], responses=CONFLICT)
async def delete(admin: AdminDep, body: m.Selection) -> m.Total:
    """Mark dead letters deleted (kept as history until purged); named ids of which none
    could be deleted are 404 or 409, as for a requeue."""
    selector = body.selector()
    if body.dry_run:
        return m.Total(total=await admin.count(selector))
    deleted = await admin.delete(selector)
    if body.ids and deleted == 0:
        raise await admin.why_not(body.ids[0], "delete")
    return m.Total(total=deleted)


@router.post("/dead-letters/purge", tags=["dead letters"])
async def purge(admin: AdminDep, body: m.PurgeBody) -> m.Total:
    """Remove dead-letter rows that died longer ago than ``older_than``."""
    return m.Total(total=await admin.purge(body.age()))


@router.put("/work-items/retry", tags=["compatibility"])
async def retry_work_items(
    admin: AdminDep, body: m.WorkItemsBody, type: RequeueMode = RequeueMode.RESTART
) -> m.Total:
    """Requeue dead jobs by id, with ``retries`` a new retry budget; ``total`` counts those
    actually moved."""
    if not body.work_item_ids:  # an empty id list must not select every dead letter
        return m.Total(total=0)
    selector = DeadFilter(ids=tuple(body.work_item_ids))
    return m.Total(total=await admin.requeue(selector, retries=body.retries, mode=type))
