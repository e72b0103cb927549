"""Every failure of the admin app as JSON ``{"error": "..."}`` with its status: the
exception handlers the app installs, and the error responses its schema documents."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from engine.amqp.errors import AMQP_UNAVAILABLE
from engine.errors import (
    JobNotFound,
    JobStateConflict,
    LazarusError,
    ServiceUnavailable,
    WorkflowNotFound,
    WorkflowStateConflict,
)
from engine.pg.errors import DB_CANCELLED, DB_REJECTED, DB_UNAVAILABLE
from engine.pg.port import WorkflowIdTaken
from engine.web import models as m
from engine.workflows.definition import UnknownWorkflowType
from engine.workflows.progress import NoSuchStep
from engine.workflows.start import WorkflowExists

log = logging.getLogger("lazarus.http")
STATUS: dict[type[Exception], int] = {
    LazarusError: 500,  # one not listed below (the most specific class wins): message says what
    JobNotFound: 404,
    JobStateConflict: 409,
    WorkflowNotFound: 404,
    WorkflowStateConflict: 409,
    WorkflowExists: 409,
    WorkflowIdTaken: 409,
    UnknownWorkflowType: 422,
    NoSuchStep: 422,
    ServiceUnavailable: 503,
    **dict.fromkeys(DB_UNAVAILABLE, 503),  # PostgreSQL away, restarting or read-only
    **dict.fromkeys(AMQP_UNAVAILABLE, 503),  # RabbitMQ away
    ValueError: 422,
    OverflowError: 422,
    **dict.fromkeys(DB_REJECTED, 422),  # PostgreSQL refused a value: a NUL, a huge number
    **dict.fromkeys(DB_CANCELLED, 504),  # LAZARUS_ADMIN_STATEMENT_TIMEOUT cut a query short
}
Responses = dict[int | str, dict[str, Any]]
ERRORS: Responses = {
    code: {"model": m.Error} for code in (400, 401, 403, 413, 415, 422, 500, 503, 504)
}
NOT_FOUND: Responses = {404: {"model": m.Error}}
CONFLICT: Responses = {404: {"model": m.Error}, 409: {"model": m.Error}}
Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]


def explain(errors: Sequence[Any]) -> str:
    """Pydantic's errors as one line: ``query.limit: Input should be ...; body.mode: ...``."""
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5]]
    return "; ".join(problems) or "invalid request"


def message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return explain(exc.errors())
    prefix = "PostgreSQL refused a value: " if isinstance(exc, DB_REJECTED) else ""
    return prefix + (str(exc) or type(exc).__name__)


def error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


async def http_error(request: Request, exc: HTTPException) -> Response:
    return error(exc.status_code, str(exc.detail), **(exc.headers or {}))


async def invalid(request: Request, exc: RequestValidationError) -> Response:
    return error(422, explain(exc.errors()))


async def known(request: Request, exc: Exception) -> Response:
    status = next(STATUS[kind] for kind in type(exc).__mro__ if kind in STATUS)
    return error(status, message(exc))


async def bug(request: Request, exc: Exception) -> Response:
    # Starlette re-raises it after this response, so the server logs the traceback.
    log.error("bug on %s %s: %r", request.method, request.url.path, exc)
    return error(500, "internal error: see the server log")


# The most specific class registered wins (Starlette walks the MRO).
HANDLERS: dict[int | type[Exception], Handler] = {
    HTTPException: http_error,
    RequestValidationError: invalid,
    **dict.fromkeys(STATUS, known),
    Exception: bug,
}
