"""The API's workflows: start one, list, show, retry their failed work items, suspend,
resume, cancel and restart (the rules are :class:`~engine.admin.workflows.Workflows`')."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from engine.admin.rows import WorkflowSummary
from engine.states import RequeueMode, WorkflowState
from engine.web import models as m
from engine.web.deps import AdminDep, Limit, Name, WorkflowId
from engine.web.errors import CONFLICT, NOT_FOUND

router = APIRouter()

Before = Annotated[
    str | None,
    Query(max_length=200, description="The 'next_before' of the page before."),
]


def row(summary: WorkflowSummary) -> m.WorkflowRow:
    fields = {k: getattr(summary, k) for k in m.WorkflowRow.model_fields}
    return m.WorkflowRow.model_validate(fields)


def cursor(before: str | None) -> tuple[datetime, str] | None:
    """A page cursor 'created_at|workflow_id' back into its parts; ValueError if it is none."""
    if before is None:
        return None
    at, bar, workflow_id = before.partition("|")
    if not bar:
        raise ValueError("'before' is the 'next_before' of a page: time|workflow id")
    return datetime.fromisoformat(at), workflow_id


@router.get("/workflows", tags=["workflows"])
async def list_workflows(
    admin: AdminDep,
    state: WorkflowState | None = None,
    type: Name = None,
    limit: Limit = 50,
    before: Before = None,
) -> m.WorkflowPage:
    """Workflows, newest first, with their progress."""
    rows = await admin.workflows.list(
        state=state, workflow_type=type, limit=limit, before=cursor(before)
    )
    last = rows[-1] if len(rows) == limit else None
    return m.WorkflowPage(
        items=[row(r) for r in rows],
        next_before=f"{last.created_at.isoformat()}|{last.workflow_id}" if last else None,
    )


@router.post("/workflows", tags=["workflows"], status_code=201, responses=CONFLICT)
async def start(admin: AdminDep, body: m.StartWorkflowBody, response: Response) -> m.Started:
    """Start a workflow registered in the admin's process; 409 if its unique name is held
    (200 with the holder when ``if_absent``)."""
    started = await admin.workflows.start(
        body.type,
        body.input,
        workflow_id=body.id,
        unique_name=body.unique_name,
        if_absent=body.if_absent,
    )
    if not started.created:
        response.status_code = 200
    return m.Started(
        workflow_id=started.workflow_id, created=started.created, state=started.state.value
    )


@router.put("/workflows/work-items/retry", tags=["workflows"], responses=CONFLICT)
async def retry_many(
    admin: AdminDep, body: m.WorkflowIdsBody, type: RequeueMode = RequeueMode.RESTART
) -> m.Total:
    """Move back the failed work items and steps of several workflows; ``total`` counts
    those moved."""
    total = await admin.workflows.retry(body.workflow_ids, mode=type, retries=body.retries)
    return m.Total(total=total)


@router.put(
    "/workflows/{workflow_id:path}/work-items/retry", tags=["workflows"], responses=CONFLICT
)
async def retry_one(
    admin: AdminDep,
    workflow_id: WorkflowId,
    type: RequeueMode = RequeueMode.RESTART,
    body: m.RetriesBody | None = None,
) -> m.Total:
    """Move back this workflow's failed work items and steps: ``restart`` from the
    beginning, ``recover`` from their checkpoints."""
    retries = body.retries if body else None
    return m.Total(total=await admin.workflows.retry([workflow_id], mode=type, retries=retries))


@router.post("/workflows/{workflow_id:path}/suspend", tags=["workflows"], responses=CONFLICT)
async def suspend(
    admin: AdminDep, workflow_id: WorkflowId, body: m.WorkflowStopBody | None = None
) -> m.WorkflowRow:
    """Hold it: no step starts until it is resumed; running steps finish."""
    return row(await admin.workflows.suspend(workflow_id, body.reason if body else None))


@router.post("/workflows/{workflow_id:path}/resume", tags=["workflows"], responses=CONFLICT)
async def resume(admin: AdminDep, workflow_id: WorkflowId) -> m.WorkflowRow:
    """Go on from where a suspend held it."""
    return row(await admin.workflows.resume(workflow_id))


@router.post("/workflows/{workflow_id:path}/cancel", tags=["workflows"], responses=CONFLICT)
async def cancel(
    admin: AdminDep, workflow_id: WorkflowId, body: m.WorkflowStopBody | None = None
) -> m.WorkflowRow:
    """Stop it for good; its running steps are cancelled."""
    return row(await admin.workflows.cancel(workflow_id, body.reason if body else None))


@router.post("/workflows/{workflow_id:path}/restart", tags=["workflows"], responses=CONFLICT)
async def restart(
    admin: AdminDep, workflow_id: WorkflowId, body: m.RestartBody | None = None
) -> m.WorkflowRow:
    """Run it again as a new generation, from the beginning or from ``from_step``."""
    from_step = body.from_step if body else None
    return row(await admin.workflows.restart(workflow_id, from_step=from_step))


@router.get("/workflows/{workflow_id:path}", tags=["workflows"], responses=NOT_FOUND)
async def show(admin: AdminDep, workflow_id: WorkflowId) -> m.WorkflowDetail:
    """The workflow, its steps, and the steps and items that need a person."""
    detail = await admin.workflows.show(workflow_id)
    return m.WorkflowDetail.model_validate(
        row(detail.summary).model_dump()
        | {
            "input": detail.input,
            "steps": [m.StepRow.model_validate(s, from_attributes=True) for s in detail.steps],
            "needs_person": [
                m.StepRow.model_validate(s, from_attributes=True) for s in detail.needs_person
            ],
            "causes": detail.causes,
            "fan_outs": detail.fan_outs,
        }
    )
