"""The dashboard: server-rendered pages and htmx fragments over the same Admin as the API.

Buttons post to ``/ui/...`` routes that call :mod:`engine.admin` and
:mod:`engine.lifecycle` and answer with the refreshed fragment; nothing here decides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from engine import http_models as m
from engine.admin import Admin
from engine.errors import JobNotFound, JobStateConflict, LazarusError
from engine.filters import DeadFilter
from engine.http import FILTERS, TOKEN_COOKIE, WEB, AdminDep, check_token, get_admin, message
from engine.lifecycle import REQUESTED_BY_USER, Lifecycle
from engine.message import now_utc
from engine.states import JobState


def age(when: datetime | None) -> str:
    """'42s', '5m', '3h' or '2d' since ``when``: how long a dead job has waited."""
    if when is None:
        return "-"
    seconds = max(0, int((now_utc() - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def form_filter(form: dict[str, str]) -> DeadFilter:
    return m.DeadFilterBody.model_validate({k: form[k] for k in FILTERS if form.get(k)}).to_filter()


def dashboard_router(guard: list[Any]) -> APIRouter:
    ui = APIRouter()
    templates = Jinja2Templates(directory=WEB / "templates")
    templates.env.filters |= {"age": age, "quote": lambda text: quote(str(text), safe="")}
    Form = dict[str, str]

    async def render(request: Request, admin: Admin, form: Form, flash: str = "",
                     ok: bool = True, page: str = "_panel.html") -> HTMLResponse:  # fmt: skip
        try:
            selector = form_filter(form)
        except ValueError as exc:
            selector, flash, ok = DeadFilter(), f"filter: {message(exc)}", False
        lifecycle = Lifecycle(admin)
        counts = await lifecycle.counts()
        chart = await lifecycle.activity()
        return templates.TemplateResponse(request, page, {
            "flash": flash, "ok": ok, "filters": form,
            "queues": await lifecycle.list_queues(),
            "types": await lifecycle.list_types(),
            "counts": {s.value: counts.get(s.value, 0) for s in JobState},
            "dead": await admin.list_dead(selector, limit=50),
            "matching": await admin.count(selector),
            "suspended": await lifecycle.list_jobs(state=JobState.SUSPENDED, limit=20),
            "chart": chart, "top": max([1, *(n for b in chart for n in b.values())]),
        })  # fmt: skip

    async def act(request: Request, admin: Admin, do: Callable[[Form], Awaitable[str]]) -> Response:
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        try:
            return await render(request, admin, form, await do(form))
        except (LazarusError, ValueError, asyncpg.DataError) as exc:
            return await render(request, admin, form, message(exc), ok=False)

    def options(form: Form) -> dict[str, Any]:
        return m.RequeueOptions.model_validate(form, extra="ignore").model_dump()

    @ui.get("/")
    async def index(request: Request, token: str | None = None) -> Response:
        if token is not None:  # set once: kept as a cookie, then a clean address
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response
        try:
            check_token(request, None)
        except HTTPException as exc:
            return templates.TemplateResponse(
                request, "login.html", {"error": exc.detail}, status_code=401
            )
        return await render(request, get_admin(request), dict(request.query_params),
                            page="index.html")  # fmt: skip

    guarded = APIRouter(dependencies=guard)

    @guarded.get("/ui/panel")
    async def panel(request: Request, admin: AdminDep) -> Response:
        return await render(request, admin, dict(request.query_params))

    @guarded.get("/ui/dead/{job_id}")
    async def deaths(request: Request, admin: AdminDep, job_id: str) -> Response:
        try:
            history, problem = await admin.show(job_id), ""
        except JobNotFound as exc:
            history, problem = [], str(exc)
        context = {"job_id": job_id, "history": history, "problem": problem}
        return templates.TemplateResponse(request, "_deaths.html", context)

    @guarded.get("/ui/jobs/{job_id}/cause")
    async def why(request: Request, admin: AdminDep, job_id: str) -> Response:
        try:
            found, problem = await Lifecycle(admin).cause(job_id), ""
        except (JobNotFound, JobStateConflict) as exc:
            found, problem = {"job_id": job_id}, str(exc)
        return templates.TemplateResponse(request, "_cause.html", found | {"problem": problem})

    @guarded.post("/ui/dead/{job_id}/requeue")
    async def requeue_one(request: Request, admin: AdminDep, job_id: str) -> Response:
        async def do(form: Form) -> str:
            await admin.requeue_one(job_id, **options(form))
            return f"requeued job {job_id}"

        return await act(request, admin, do)

    @guarded.post("/ui/dead/{job_id}/delete")
    async def delete_one(request: Request, admin: AdminDep, job_id: str) -> Response:
        async def do(form: Form) -> str:
            await admin.delete_one(job_id)
            return f"deleted dead letter of job {job_id}"

        return await act(request, admin, do)

    @guarded.post("/ui/requeue-matching")
    async def requeue_matching(request: Request, admin: AdminDep) -> Response:
        async def do(form: Form) -> str:
            selector = form_filter(form)
            moved = await admin.requeue(selector, **options(form))
            return f"requeued {moved} dead jobs matching the filter"

        return await act(request, admin, do)

    @guarded.post("/ui/queues/{queue}/{verb}")
    async def queue_verb(request: Request, admin: AdminDep, queue: str, verb: str) -> Response:
        async def do(form: Form) -> str:
            lifecycle = Lifecycle(admin)
            if verb == "pause":
                changed = await lifecycle.pause_queue(
                    queue, form.get("reason") or REQUESTED_BY_USER
                )
            elif verb == "resume":
                changed = await lifecycle.resume_queue(queue)
            else:
                raise ValueError(f"no queue action {verb!r}")
            return f"queue {queue}: {verb}d" if changed else f"queue {queue}: nothing to {verb}"

        return await act(request, admin, do)

    @guarded.post("/ui/types/{job_type}/{verb}")
    async def type_verb(request: Request, admin: AdminDep, job_type: str, verb: str) -> Response:
        async def do(form: Form) -> str:
            lifecycle = Lifecycle(admin)
            if verb == "pause":
                reason = form.get("reason") or REQUESTED_BY_USER
                changed = await lifecycle.pause_type(job_type, reason)
                return f"job type {job_type}: " + ("paused" if changed else "already paused")
            if verb == "resume":
                changed, moved = await lifecycle.resume_type(job_type)
                done = "resumed" if changed else "was not paused"
                return f"job type {job_type}: {done}; {moved} parked jobs moved back"
            raise ValueError(f"no job type action {verb!r}")

        return await act(request, admin, do)

    @guarded.post("/ui/jobs/{job_id}/resume")
    async def resume(request: Request, admin: AdminDep, job_id: str) -> Response:
        async def do(form: Form) -> str:
            row = await Lifecycle(admin).resume(job_id, mode=options(form)["mode"])
            return f"resumed job {job_id} as generation {row['generation']}"

        return await act(request, admin, do)

    ui.include_router(guarded)
    return ui
