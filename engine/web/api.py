"""The admin HTTP API, ``/metrics`` and the dashboard: FastAPI over one :class:`Admin`.

Like the CLI it parses and prints; every rule lives in :mod:`engine.admin.facade` and
:mod:`engine.admin.lifecycle`. Errors are JSON ``{"error": "..."}``::

    400/422  a bad value (filter, age, body)    404  no such job or dead letter
    401      missing or wrong bearer token      409  the job is in another state
    403      a cross-site request               413  a body over the limit
    415      a body that is not JSON            503  RabbitMQ or PostgreSQL is down
    504      a query ran past its time limit    500  a bug: logged, never a traceback

With ``LAZARUS_ADMIN_TOKEN`` set, everything but ``/api/health``, ``/login`` and
``/static`` needs it: the API and ``/metrics`` as ``Authorization: Bearer <token>``,
the dashboard as the session cookie its login form sets (or the same bearer header).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import aiormq
import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from engine.admin.facade import Admin
from engine.admin.lifecycle import Lifecycle
from engine.errors import (
    ConfigError,
    JobNotFound,
    JobStateConflict,
    LazarusError,
    ServiceUnavailable,
)
from engine.filters import DeadFilter
from engine.health import check_services
from engine.settings import Settings
from engine.states import DeadStatus, JobState, RequeueMode
from engine.web import models as m
from engine.web.guard import AdminGuard
from engine.web.sessions import Sessions, same_token

log = logging.getLogger("lazarus.http")
WEB = Path(__file__).parent
FILTERS = ("type", "queue", "error_type", "error", "since")
DEAD_LETTERS = Gauge("lazarus_dead_letters", "Dead-letter rows by status.", ["status"])
STATUS: dict[type[Exception], int] = {
    LazarusError: 500,  # one not listed below (the most specific class wins): message says what
    JobNotFound: 404,
    JobStateConflict: 409,
    ServiceUnavailable: 503,
    OSError: 503,
    asyncpg.PostgresConnectionError: 503,
    asyncpg.ConnectionDoesNotExistError: 503,
    aiormq.exceptions.AMQPConnectionError: 503,
    ValueError: 422,
    OverflowError: 422,
    asyncpg.DataError: 422,  # PostgreSQL refused a value: a NUL in text, a number out of range
    asyncpg.QueryCanceledError: 504,  # LAZARUS_ADMIN_STATEMENT_TIMEOUT cut a query short
}
Limit = Annotated[int, Query(ge=1, le=10_000, description="Rows per page.")]
Name = Annotated[str | None, Query(max_length=m.MAX_NAME)]
Responses = dict[int | str, dict[str, Any]]
ERRORS: Responses = {
    code: {"model": m.Error} for code in (400, 401, 403, 413, 415, 422, 500, 503, 504)
}
NOT_FOUND: Responses = {404: {"model": m.Error}}
CONFLICT: Responses = {404: {"model": m.Error}, 409: {"model": m.Error}}
bearer = HTTPBearer(auto_error=False, description="LAZARUS_ADMIN_TOKEN, when it is set.")


def explain(errors: Sequence[Any]) -> str:
    """Pydantic's errors as one line: ``query.limit: Input should be ...; body.mode: ...``."""
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5]]
    return "; ".join(problems) or "invalid request"


def message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return explain(exc.errors())
    prefix = "PostgreSQL refused a value: " if isinstance(exc, asyncpg.DataError) else ""
    return prefix + (str(exc) or type(exc).__name__)


def error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "?"


def api_auth(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    """With a token configured, the API and ``/metrics`` take it as a bearer token, never the
    dashboard's cookie: a browser attaches a cookie to requests other sites make it send."""
    token: str = request.app.state.token
    if credentials is None:
        raise HTTPException(
            401,
            "missing bearer token (LAZARUS_ADMIN_TOKEN is set)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not same_token(token, credentials.credentials):
        raise HTTPException(401, "wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
    request.state.actor = f"http:token@{client_address(request)}"


def anonymous(request: Request) -> None:
    """Served without a token (``--no-auth``): the audit log still says from where."""
    request.state.actor = f"http:anonymous@{client_address(request)}"


def get_admin(request: Request) -> Admin:
    """The app's Admin, acting as whoever the auth check found (for the audit log)."""
    admin: Admin = request.app.state.admin
    return admin.acting_as(getattr(request.state, "actor", f"http:?@{client_address(request)}"))


AdminDep = Annotated[Admin, Depends(get_admin)]
JobId = Annotated[str, PathParam(max_length=m.MAX_ID, description="Job id ('/' allowed).")]


def create_app(settings: Settings, *, open_access: bool = False) -> FastAPI:
    """The API, metrics and dashboard of one namespace; the Admin opens with the app.

    Without ``LAZARUS_ADMIN_TOKEN`` the app is refused unless ``open_access`` says that
    serving without authentication is meant (``lazarus admin --no-auth``).
    """
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    if token is None and not open_access:
        raise ConfigError("LAZARUS_ADMIN_TOKEN is not set (or serve with open_access)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = settings.admin_statement_timeout
        async with Admin(settings, actor="http", statement_timeout=timeout) as admin:
            app.state.admin = admin
            yield

    app = FastAPI(
        title="Lazarus admin API",
        version="1",
        description=__doc__,
        lifespan=lifespan,
        responses=ERRORS,
        # FastAPI's /docs and /redoc pages load their scripts from a CDN: nothing served
        # here may depend on a request leaving the machine.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind the token
    )
    app.state.settings = settings
    app.state.token = token
    app.state.sessions = Sessions(token, settings.admin_session_hours * 3600)
    add_error_handlers(app)
    # Only a configured token is documented (and checked): the schema says what is required.
    guard = [Depends(api_auth if token is not None else anonymous)]
    app.include_router(api_router(), prefix="/api", dependencies=guard)
    app.mount("/static", StaticFiles(directory=WEB / "static"), name="static")

    @app.get("/api/health", tags=["health"], responses={503: {"model": m.Health}})
    async def health() -> JSONResponse:
        """Whether RabbitMQ and PostgreSQL answer: 200 if both do, else 503."""
        report = await check_services(settings)
        ok = all(problem is None for problem in report.values())
        body = m.Health(status="ok" if ok else "unavailable", **report)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/metrics", include_in_schema=False, dependencies=guard)
    async def metrics(admin: AdminDep) -> Response:
        for status in DeadStatus:
            DEAD_LETTERS.labels(status.value).set(await admin.count(DeadFilter(status=status)))
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    from engine.web.dashboard import dashboard_router  # it builds on this module's helpers

    app.include_router(dashboard_router(), include_in_schema=False)
    app.add_middleware(
        AdminGuard, hosts=settings.admin_host_names, max_body=settings.admin_max_body_bytes
    )
    return app


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), **(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, explain(exc.errors()))

    async def known(request: Request, exc: Exception) -> JSONResponse:
        status = next(STATUS[kind] for kind in type(exc).__mro__ if kind in STATUS)
        return error(status, message(exc))

    for kind in STATUS:  # the most specific class registered wins (Starlette walks the MRO)
        app.add_exception_handler(kind, known)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises it after this response, so the server logs the traceback.
        log.error("bug on %s %s: %r", request.method, request.url.path, exc)
        return error(500, "internal error: see the server log")


def api_router() -> APIRouter:
    api = APIRouter()

    @api.get("/dead-letters", tags=["dead letters"])
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
            after=after, before=before,
        )  # fmt: skip
        selector = query.to_filter(wanted)
        rows = await admin.list_dead(selector, limit=limit, before_id=before_id)
        more = rows[-1]["id"] if len(rows) == limit else None
        return m.DeadLetterPage(items=rows, next_before_id=more)  # type: ignore[arg-type]

    @api.get("/dead-letters/{job_id:path}", tags=["dead letters"], responses=NOT_FOUND)
    async def show_dead(admin: AdminDep, job_id: JobId) -> list[m.DeadLetterDetail]:
        """Every death of a job, oldest generation first, with tracebacks."""
        deaths = await admin.show(job_id)
        return [m.DeadLetterDetail.model_validate(d, from_attributes=True) for d in deaths]

    @api.post("/dead-letters/requeue", tags=["dead letters"], responses=CONFLICT)
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

    @api.post("/dead-letters/delete", tags=["dead letters"], responses=CONFLICT)
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

    @api.post("/dead-letters/purge", tags=["dead letters"])
    async def purge(admin: AdminDep, body: m.PurgeBody) -> m.Total:
        """Remove dead-letter rows that died longer ago than ``older_than``."""
        return m.Total(total=await admin.purge(body.age()))

    @api.put("/work-items/retry", tags=["compatibility"])
    async def retry_work_items(
        admin: AdminDep, body: m.WorkItemsBody, type: RequeueMode = RequeueMode.RESTART
    ) -> m.Total:
        """Requeue dead jobs by id, with ``retries`` a new retry budget; ``total`` counts those
        actually moved."""
        if not body.work_item_ids:  # an empty id list must not select every dead letter
            return m.Total(total=0)
        selector = DeadFilter(ids=tuple(body.work_item_ids))
        return m.Total(total=await admin.requeue(selector, retries=body.retries, mode=type))

    @api.get("/jobs", tags=["jobs"])
    async def list_jobs(
        admin: AdminDep,
        state: JobState | None = None,
        type: Name = None,
        queue: Name = None,
        limit: Limit = 50,
    ) -> m.JobPage:
        """Jobs, most recently updated first."""
        rows = await Lifecycle(admin).list_jobs(
            state=state, job_type=type, queue=queue, limit=limit
        )
        return m.JobPage(items=rows)  # type: ignore[arg-type]

    @api.get("/jobs/{job_id:path}/cause", tags=["jobs"], responses=CONFLICT)
    async def cause(admin: AdminDep, job_id: JobId) -> m.Cause:
        """Why a suspended job stopped: 'Requested by user', or the exception and traceback."""
        return m.Cause.model_validate(await Lifecycle(admin).cause(job_id))

    @api.get("/jobs/{job_id:path}", tags=["jobs"], responses=NOT_FOUND)
    async def show_job(admin: AdminDep, job_id: JobId) -> m.JobDetail:
        return m.JobDetail.model_validate(await Lifecycle(admin).show(job_id))

    @api.post("/jobs/{job_id:path}/suspend", tags=["jobs"], responses=CONFLICT)
    async def suspend(
        admin: AdminDep, job_id: JobId, body: m.StopBody | None = None
    ) -> m.JobDetail:
        """Stop a pending, running or retrying job, keeping its checkpoint."""
        body = body or m.StopBody()
        row = await Lifecycle(admin).suspend(job_id, body.reason, generation=body.generation)
        return m.JobDetail.model_validate(row)

    @api.post("/jobs/{job_id:path}/cancel", tags=["jobs"], responses=CONFLICT)
    async def cancel(admin: AdminDep, job_id: JobId, body: m.StopBody | None = None) -> m.JobDetail:
        """Stop a job for good."""
        body = body or m.StopBody()
        row = await Lifecycle(admin).cancel(job_id, body.reason, generation=body.generation)
        return m.JobDetail.model_validate(row)

    @api.post("/jobs/{job_id:path}/resume", tags=["jobs"], responses=CONFLICT)
    async def resume(
        admin: AdminDep, job_id: JobId, body: m.ResumeBody | None = None
    ) -> m.JobDetail:
        """Send a suspended job back to its queue; a ``payload`` given replaces the old one."""
        body = body or m.ResumeBody()
        row = await Lifecycle(admin).resume(
            job_id,
            mode=body.mode,
            retries=body.retries,
            payload=body.payload,
            replace_payload="payload" in body.model_fields_set,
            generation=body.generation,
        )
        return m.JobDetail.model_validate(row)

    @api.get("/queues", tags=["queues"])
    async def list_queues(admin: AdminDep) -> m.QueuePage:
        """Depth, consumers and pause of every queue seen."""
        return m.QueuePage(items=await Lifecycle(admin).list_queues())  # type: ignore[arg-type]

    @api.post("/queues/{queue}/pause", tags=["queues"])
    async def pause(admin: AdminDep, queue: str, body: m.PauseBody | None = None) -> m.QueueChange:
        """Stop workers taking jobs from a queue; ``changed`` is false if it was paused."""
        reason = (body or m.PauseBody()).reason
        return m.QueueChange(queue=queue, changed=await Lifecycle(admin).pause_queue(queue, reason))

    @api.post("/queues/{queue}/resume", tags=["queues"])
    async def unpause(admin: AdminDep, queue: str) -> m.QueueChange:
        """Let workers take jobs from a queue again; ``changed`` is false if it was not paused."""
        return m.QueueChange(queue=queue, changed=await Lifecycle(admin).resume_queue(queue))

    @api.get("/types", tags=["types"])
    async def list_types(admin: AdminDep) -> m.TypePage:
        """Pause and parked jobs of every job type seen or paused."""
        return m.TypePage(items=await Lifecycle(admin).list_types())  # type: ignore[arg-type]

    @api.post("/types/{job_type}/pause", tags=["types"])
    async def pause_type(
        admin: AdminDep, job_type: str, body: m.PauseBody | None = None
    ) -> m.TypeChange:
        """Stop workers running a job type (they park its jobs); ``changed`` is false if it
        was paused."""
        reason = (body or m.PauseBody()).reason
        changed = await Lifecycle(admin).pause_type(job_type, reason)
        return m.TypeChange(job_type=job_type, changed=changed)

    @api.post("/types/{job_type}/resume", tags=["types"])
    async def resume_type(admin: AdminDep, job_type: str) -> m.TypeChange:
        """Let workers run a job type again and move its parked jobs back; ``changed`` is
        false if it was not paused."""
        changed, moved = await Lifecycle(admin).resume_type(job_type)
        return m.TypeChange(job_type=job_type, changed=changed, moved=moved)

    @api.get("/workers", tags=["workers"])
    async def list_workers(admin: AdminDep) -> m.WorkerPage:
        """Workers seen in the last day, alive first: host, version, queues, job types."""
        return m.WorkerPage(items=await admin.list_workers())  # type: ignore[arg-type]

    @api.get("/audit", tags=["audit"])
    async def audit(
        admin: AdminDep,
        limit: Limit = 50,
        before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    ) -> m.AuditPage:
        """Who did what, newest first: every requeue, delete, purge, pause, resume, stop and
        login, with the client address; a bulk operation's entry counts as it goes."""
        rows = await admin.audit_log(limit, before_id)
        more = rows[-1]["id"] if len(rows) == limit else None
        return m.AuditPage(items=rows, next_before_id=more)  # type: ignore[arg-type]

    @api.get("/stats", tags=["stats"])
    async def stats(admin: AdminDep) -> m.Stats:
        """Jobs per state and dead letters waiting."""
        counts = await Lifecycle(admin).counts()
        return m.Stats(
            jobs={s.value: counts.get(s.value, 0) for s in JobState},
            dead_letters=await admin.count(DeadFilter()),
        )

    return api
