"""The dashboard's workflows: a list by state, and a workflow at its own URL with its
steps, the failed ones first with their cause, the progress of its fan-outs, and what a
person can do about it (retry its failed items, suspend, resume, cancel, restart).

Like the rest of the dashboard, these routes parse and render; every rule is
:class:`~engine.admin.workflows.Workflows`'.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from engine.admin.rows import WorkflowDetail
from engine.errors import LazarusError, WorkflowNotFound
from engine.pg.errors import DB_REJECTED
from engine.states import RequeueMode, WorkflowState
from engine.web import models as m
from engine.web.dashboard import SESSION, page, read_form
from engine.web.deps import AdminDep, Name
from engine.web.errors import message
from engine.web.triage import BY_URL

router = APIRouter(include_in_schema=False)

VERBS = ("retry", "suspend", "resume", "cancel", "restart")


@router.get("/workflows", dependencies=BY_URL)
async def workflows_page(
    request: Request, admin: AdminDep, state: WorkflowState | None = None, type: Name = None
) -> Response:
    """Workflows by state, newest first, with their progress."""
    rows = await admin.workflows.list(state=state, workflow_type=type, limit=200)
    context = {
        "rows": rows,
        "state": state.value if state else "",
        "states": list(WorkflowState),
        "type": type or "",
    }
    return page(request, "workflows.html", context)


@router.get("/workflows/{workflow_id:path}", dependencies=BY_URL)
async def workflow_page(request: Request, admin: AdminDep, workflow_id: str) -> Response:
    """A workflow at its own address: what needs a person first, then every step."""
    detail: WorkflowDetail | None
    try:
        detail, problem = await admin.workflows.show(workflow_id), ""
    except WorkflowNotFound as exc:
        detail, problem = None, str(exc)
    context = {"workflow_id": workflow_id, "detail": detail, "problem": problem}
    return page(request, "workflow.html", context, status=404 if problem else 200)


@router.post("/ui/workflows/{verb}", dependencies=SESSION)
async def act(request: Request, admin: AdminDep, verb: str) -> Response:
    """Retry the failed items of a workflow, or suspend, resume, cancel or restart it, from
    its page (which asks first); the result is shown where the person acted."""
    form = await read_form(request)
    workflow_id = form.get("workflow_id", "")
    try:
        if verb not in VERBS or not workflow_id or len(workflow_id) > m.MAX_WORKFLOW_ID:
            raise ValueError(f"no workflow action {verb[:40]!r} (or no workflow id)")
        control = admin.workflows
        reason = form.get("reason") or None
        if verb == "retry":
            chosen = m.RequeueOptions.model_validate(form, extra="ignore")
            mode = chosen.mode or RequeueMode.RESTART
            moved = await control.retry([workflow_id], retries=chosen.retries, mode=mode)
            text = f"moved back {moved} failed steps and items"
        elif verb == "restart":
            from_step = form.get("from_step") or None
            row = await control.restart(workflow_id, from_step=from_step)
            text = f"restarted as generation {row.generation}"
        else:
            action = {"suspend": control.suspend, "cancel": control.cancel}
            if verb == "resume":
                row = await control.resume(workflow_id)
            else:
                row = await action[verb](workflow_id, reason)
            text = f"workflow {workflow_id}: {row.state}"
        ok = True
    except (LazarusError, ValueError, *DB_REJECTED) as exc:
        text, ok = message(exc), False
    response = page(request, "_result.html", {"flash": text, "ok": ok})
    response.headers["HX-Trigger"] = "refresh-panel"
    return response
