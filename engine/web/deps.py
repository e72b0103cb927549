"""What a route asks of its request: who is calling, the app's Admin, settings and
sessions, read from ``request.app.state`` (set by :func:`engine.web.api.create_app`),
and the bounded parameters the API's routes share.

Routes declare these as FastAPI dependencies, so the routers stay module-level and any
app that sets the state can serve them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from engine.admin.facade import Admin
from engine.settings import Settings
from engine.web import models as m
from engine.web.guard import SAFE_METHODS
from engine.web.sessions import Role, Sessions, same_token

bearer = HTTPBearer(
    auto_error=False,
    description="LAZARUS_ADMIN_TOKEN, when it is set; LAZARUS_ADMIN_READ_TOKEN for GET only.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "?"


def token_of(request: Request) -> str | None:
    """The admin token the app checks, or None when it serves without one (``--no-auth``)."""
    token: str | None = request.app.state.token
    return token


def read_token_of(request: Request) -> str | None:
    """The read-only token the app accepts beside the admin token, if one is set."""
    token: str | None = request.app.state.read_token
    return token


def role_of(request: Request, given: str) -> Role | None:
    """The role a presented token grants, or None if it is neither token."""
    token, read_token = token_of(request), read_token_of(request)
    if token is not None and same_token(token, given):
        return Role.ADMIN
    if read_token is not None and same_token(read_token, given):
        return Role.READ
    return None


def refuse_read_only(request: Request, role: Role, what: str) -> None:
    """A read-only token or session may look, never change: 403 for any unsafe method.
    Checked at the door, whatever the route, so a new route cannot forget it."""
    request.state.role = role
    if role is Role.READ and request.method not in SAFE_METHODS:
        raise HTTPException(
            403, f"{what} is read-only (LAZARUS_ADMIN_READ_TOKEN): it may not change anything"
        )


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def api_auth(request: Request, credentials: Credentials) -> None:
    """With a token configured, the API and ``/metrics`` take it as a bearer token, never the
    dashboard's cookie: a browser attaches a cookie to requests other sites make it send."""
    token = token_of(request)
    if credentials is None:
        raise HTTPException(
            401,
            "missing bearer token (LAZARUS_ADMIN_TOKEN is set)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    role = role_of(request, credentials.credentials) if token is not None else None
    if role is None:
        raise HTTPException(401, "wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
    refuse_read_only(request, role, "this token")
    who = "token" if role is Role.ADMIN else "read-token"
    request.state.actor = f"http:{who}@{client_address(request)}"


def anonymous(request: Request) -> None:
    """Served without a token (``--no-auth``): the audit log still says from where."""
    request.state.actor = f"http:anonymous@{client_address(request)}"


def token_auth(request: Request, credentials: Credentials) -> None:
    """:func:`api_auth` if the app has a token, else :func:`anonymous`: for routes left out
    of the schema. The API's routes get one of the two when the app includes them, so that
    its schema documents the bearer token only when one is required."""
    if token_of(request) is None:
        anonymous(request)
    else:
        api_auth(request, credentials)


def get_admin(request: Request) -> Admin:
    """The app's Admin, acting as whoever the auth check found (for the audit log)."""
    admin: Admin = request.app.state.admin
    return admin.acting_as(getattr(request.state, "actor", f"http:?@{client_address(request)}"))


AdminDep = Annotated[Admin, Depends(get_admin)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Limit = Annotated[int, Query(ge=1, le=10_000, description="Rows per page.")]
Name = Annotated[str | None, Query(max_length=m.MAX_NAME)]
JobId = Annotated[str, PathParam(max_length=m.MAX_ID, description="Job id ('/' allowed).")]
WorkflowId = Annotated[
    str,
    PathParam(max_length=m.MAX_WORKFLOW_ID, description="Workflow id ('/' allowed)."),
]
