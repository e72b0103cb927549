"""The admin HTTP API, ``/metrics`` and the dashboard: FastAPI over one :class:`Admin`.

Like the CLI it parses and prints; every rule lives in :mod:`engine.admin.facade` and
:mod:`engine.admin.lifecycle`. Errors are JSON ``{"error": "..."}``::

    400/422  a bad value (filter, age, body)    404  no such job or dead letter
    401      missing or wrong bearer token      409  the job is in another state
    403      a cross-site request, or a change  413  a body over the limit
             asked with the read-only token
    415      a body that is not JSON            503  RabbitMQ or PostgreSQL is down
    504      a query ran past its time limit    500  a bug: logged, never a traceback

With ``LAZARUS_ADMIN_TOKEN`` set, everything but ``/api/health``, ``/login`` and
``/static`` needs it: the API and ``/metrics`` as ``Authorization: Bearer <token>``,
the dashboard as the session cookie its login form sets (or the same bearer header).
``LAZARUS_ADMIN_READ_TOKEN``, if set, is taken the same ways for reading only: any
POST, PUT, PATCH or DELETE with it, or from a session it opened, is 403.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from engine.admin.facade import Admin
from engine.errors import ConfigError
from engine.settings import Settings
from engine.web import (
    dashboard,
    routes_dead,
    routes_jobs,
    routes_overview,
    routes_pauses,
    routes_service,
    routes_workflows,
    triage,
    workflow_pages,
)
from engine.web.deps import anonymous, api_auth
from engine.web.errors import ERRORS, HANDLERS
from engine.web.guard import AdminGuard
from engine.web.sessions import Sessions, same_token

STATIC = Path(__file__).parent / "static"

# The JSON API, one router per subject. Every route of the app is declared at module level
# (here, in engine.web.routes_service, .dashboard and .triage) and reads what it needs
# from app.state: create_app only assembles.
router = APIRouter(prefix="/api")
for part in (routes_dead, routes_jobs, routes_pauses, routes_overview, routes_workflows):
    router.include_router(part.router)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The Admin opens with the app and closes with it."""
    settings: Settings = app.state.settings
    timeout = settings.admin_statement_timeout
    async with Admin(settings, actor="http", statement_timeout=timeout) as admin:
        app.state.admin = admin
        yield


def create_app(settings: Settings, *, open_access: bool = False) -> FastAPI:
    """The API, metrics and dashboard of one namespace; the Admin opens with the app.

    Without ``LAZARUS_ADMIN_TOKEN`` the app is refused unless ``open_access`` says that
    serving without authentication is meant (``lazarus admin --no-auth``).
    """
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    if token is None and not open_access:
        raise ConfigError("LAZARUS_ADMIN_TOKEN is not set (or serve with open_access)")
    read = settings.admin_read_token
    read_token = read.get_secret_value() if read and token is not None else None
    if read_token is not None and same_token(read_token, token or ""):
        raise ConfigError("LAZARUS_ADMIN_READ_TOKEN must differ from LAZARUS_ADMIN_TOKEN")
    app = FastAPI(
        title="Lazarus admin API",
        version="1",
        description=__doc__,
        lifespan=lifespan,
        responses=ERRORS,
        exception_handlers=HANDLERS,
        # FastAPI's /docs and /redoc pages load their scripts from a CDN: nothing served
        # here may depend on a request leaving the machine.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served by engine.web.routes_service, behind the token
    )
    app.state.settings = settings
    app.state.token = token
    app.state.read_token = read_token  # only beside an admin token: open access is open
    app.state.sessions = Sessions(token, settings.admin_session_hours * 3600, read_token)
    # Only a configured token is documented (and checked): the schema says what is
    # required, so the API's check is chosen here rather than per request.
    app.include_router(router, dependencies=[Depends(api_auth if token is not None else anonymous)])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(routes_service.router)
    app.include_router(dashboard.router)
    app.include_router(triage.router)
    app.include_router(workflow_pages.router)
    app.add_middleware(
        AdminGuard, hosts=settings.admin_host_names, max_body=settings.admin_max_body_bytes
    )
    return app
