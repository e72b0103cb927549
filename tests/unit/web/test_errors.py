"""How the admin app answers a database error: the pg wing's classification, one status each."""

from __future__ import annotations

import asyncpg
import orjson
import pytest
from starlette.requests import Request

from engine.web.errors import known


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (asyncpg.CannotConnectNowError("the database system is starting up"), 503),
        (asyncpg.ReadOnlySQLTransactionError("read-only transaction"), 503),
        (asyncpg.TooManyConnectionsError("too many clients"), 503),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), 503),
        (ConnectionRefusedError(111, "refused"), 503),
        (asyncpg.QueryCanceledError("statement timeout"), 504),
        (asyncpg.DataError("invalid byte sequence"), 422),
    ],
)
async def test_a_database_error_gets_the_status_of_its_kind(exc: Exception, status: int) -> None:
    request = Request({"type": "http", "method": "GET", "path": "/api/dead-letters"})
    answer = await known(request, exc)
    assert answer.status_code == status
    assert orjson.loads(answer.body)["error"]
