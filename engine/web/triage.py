"""The dashboard's triage pages: a dead letter or a job at its own URL, jobs by state, and
bulk actions that show their dry-run count, and ask for the budget and mode, before acting.

Like the rest of the dashboard, these routes parse and render; every rule is the Admin's
and the Lifecycle's (the selection rules of the API and the CLI included).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from engine.admin.facade import Admin
from engine.admin.rows import Job
from engine.errors import JobNotFound, LazarusError
from engine.filters import DeadFilter, bulk_selection
from engine.pg.errors import DB_REJECTED
from engine.states import JobState, RequeueMode
from engine.web import models as m
from engine.web.dashboard import FILTERS, SESSION, dashboard_auth, form_filter, page, read_form
from engine.web.deps import AdminDep, Credentials, Name, token_of
from engine.web.errors import message

ACTIONS = {"requeue": "requeued", "delete": "deleted", "resume": "resumed"}


async def page_auth(request: Request, credentials: Credentials) -> None:
    """A page opened by its URL: without a session, go to the login form instead of a 401."""
    try:
        await dashboard_auth(request, credentials)
    except HTTPException as exc:
        if exc.status_code != 401 or token_of(request) is None:
            raise
        raise HTTPException(303, "log in first", headers={"Location": "/login"}) from None


async def picked_ids(request: Request) -> list[str]:
    """The ``ids`` fields of the body (checkboxes, or one row's button), bounded."""
    body = (await request.body()).decode(errors="replace")
    ids = parse_qs(body).get("ids", [])
    if len(ids) > m.MAX_IDS or any(not i or len(i) > m.MAX_ID for i in ids):
        raise ValueError(f"ids: 1 to {m.MAX_IDS} job ids of 1 to {m.MAX_ID} characters")
    return list(dict.fromkeys(ids))


def selection(form: dict[str, str], ids: list[str], everything: bool) -> tuple[DeadFilter, bool]:
    """The dead letters an action names, and whether that is every one (an empty filter,
    which the API's rule accepts only with ``everything``)."""
    if form.get("matching") == "true":
        by_filter = form_filter(form)
        return bulk_selection((), by_filter, everything), by_filter.is_empty()
    if not ids:
        raise ValueError("select dead letters first (the boxes at the left of the rows)")
    return DeadFilter(ids=tuple(ids)), False


BY_URL = [Depends(page_auth)]  # as SESSION, but a page opened without one goes to /login

router = APIRouter(include_in_schema=False)


@router.post("/ui/bulk/preview", dependencies=SESSION)
async def preview(request: Request, admin: AdminDep) -> Response:
    """The confirmation of an action: its dry-run count, the budget and mode to choose."""
    form = await read_form(request)
    action = form.get("action", "")
    context: dict[str, Any] = {"action": action, "title": f"{action.capitalize()}?",
                               "selected": None}  # fmt: skip
    try:
        if action not in ACTIONS:
            raise ValueError(f"no action {action[:40]!r}")
        ids = await picked_ids(request)
        if action == "resume":
            [job_id] = ids or [""]
            job = await admin.jobs.show(job_id)
            count = int(job.state == JobState.SUSPENDED)
            context |= {"noun": "suspended job", "selected": 1}
        else:
            selector, whole = selection(form, ids, everything=True)  # only counted
            count = await admin.count(selector)
            context |= {"noun": "dead letters", "whole": whole}
            if ids:
                context["selected"] = len(ids)
    except (LazarusError, ValueError, *DB_REJECTED) as exc:
        return page(request, "_confirm.html", context | {"error": message(exc)})
    carried = [("ids", i) for i in ids]
    if form.get("matching") == "true":
        carried += [("matching", "true")] + [(k, form[k]) for k in FILTERS if form.get(k)]
    context |= {"count": count, "verb": ACTIONS[action], "carried": carried}
    return page(request, "_confirm.html", context)


@router.post("/ui/bulk/apply", dependencies=SESSION)
async def apply(request: Request, admin: AdminDep) -> Response:
    """Carry out a confirmed action; the result replaces the confirmation, and the
    panel refreshes."""
    form = await read_form(request)
    action = form.get("action", "")
    try:
        ids = await picked_ids(request)
        chosen = m.RequeueOptions.model_validate(form, extra="ignore")
        if action == "resume":
            [job_id] = ids or [""]
            mode = chosen.mode or RequeueMode.RECOVER
            row = await admin.jobs.resume(job_id, mode=mode, retries=chosen.retries)
            text, ok = f"resumed job {job_id} as generation {row.generation}", True
        elif action in ("requeue", "delete"):
            text, ok = await bulk(admin, action, form, ids, chosen)
        else:
            raise ValueError(f"no action {action[:40]!r}")
    except (LazarusError, ValueError, *DB_REJECTED) as exc:
        text, ok = message(exc), False
    response = page(request, "_result.html", {"flash": text, "ok": ok})
    response.headers["HX-Trigger"] = "refresh-panel"
    return response


@router.get("/dead/{job_id:path}", dependencies=BY_URL)
async def dead_page(request: Request, admin: AdminDep, job_id: str) -> Response:
    """Every death of a job at its own address, with what can be done about it."""
    try:
        history, problem = await admin.show(job_id), ""
    except JobNotFound as exc:
        history, problem = [], str(exc)
    job = await admin.store.get_job(job_id)
    attempts = await admin.jobs.attempts(job_id)
    context = {
        "job_id": job_id, "history": history, "problem": problem, "job": job,
        "attempts": attempts,
    }  # fmt: skip
    return page(request, "dead.html", context, status=404 if problem else 200)


@router.get("/jobs", dependencies=BY_URL)
async def jobs_page(
    request: Request, admin: AdminDep, state: JobState | None = None,
    type: Name = None, queue: Name = None,
) -> Response:  # fmt: skip
    """Jobs by state (from the state counts), most recently changed first."""
    rows = await admin.jobs.list_jobs(state=state, job_type=type, queue=queue, limit=200)
    context = {"rows": rows, "state": state.value if state else "", "states": list(JobState)}
    return page(request, "jobs.html", context)


@router.get("/jobs/{job_id:path}", dependencies=BY_URL)
async def job_page(request: Request, admin: AdminDep, job_id: str) -> Response:
    job: Job | dict[str, str]  # what the page shows: the job, or only the id asked for
    try:
        job, problem = await admin.jobs.show(job_id), ""
    except JobNotFound as exc:
        job, problem = {"job_id": job_id}, str(exc)
    deaths = await admin.store.history(job_id)
    attempts = await admin.jobs.attempts(job_id)
    context = {"job": job, "problem": problem, "deaths": deaths, "attempts": attempts}
    return page(request, "job.html", context, status=404 if problem else 200)


@router.post("/ui/jobs/{verb}", dependencies=SESSION)
async def stop(request: Request, admin: AdminDep, verb: str) -> Response:
    """Suspend or cancel a job from its page (the page asks first)."""
    form = await read_form(request)
    job_id, reason = form.get("job_id", ""), form.get("reason") or None
    try:
        if verb not in ("suspend", "cancel") or not job_id:
            raise ValueError(f"no job action {verb[:40]!r} (or no job id)")
        lifecycle = admin.jobs
        stopper = lifecycle.suspend if verb == "suspend" else lifecycle.cancel
        row = await stopper(job_id, reason)
        text, ok = f"job {job_id}: {row.state}", True
    except (LazarusError, ValueError, *DB_REJECTED) as exc:
        text, ok = message(exc), False
    return page(request, "_result.html", {"flash": text, "ok": ok})


async def bulk(
    admin: Admin, action: str, form: dict[str, str], ids: list[str], chosen: m.RequeueOptions
) -> tuple[str, bool]:
    """Requeue or delete what the confirmation named, under the API's selection rules."""
    selector, _ = selection(form, ids, everything=form.get("all") == "true")
    if action == "requeue":
        mode = chosen.mode or RequeueMode.RESTART
        moved = await admin.requeue(selector, retries=chosen.retries, mode=mode)
        budget = "their own budget" if chosen.retries is None else f"{chosen.retries} retries"
        text = f"requeued {moved} dead jobs ({mode.value}, {budget})"
    else:
        moved = await admin.delete(selector)
        text = f"deleted {moved} dead letters"
    if ids and moved < len(ids):
        problems = await admin.unmoved(ids)
        if problems:
            text += "; not moved: " + "; ".join(problems[:5])
    return text, moved > 0 or not ids
