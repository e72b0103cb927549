"""Whether the services answer: used by ``lazarus check`` and the HTTP health endpoint.

Each service gets LAZARUS_CONNECT_TIMEOUT to answer: a host that accepts the TCP
connection and then says nothing is reported as such, not waited on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aio_pika
import asyncpg

from engine.settings import Settings


async def check_services(settings: Settings) -> dict[str, str | None]:
    """Map each service to None when it answers, else to what went wrong, naming where."""
    rabbit, postgres = await asyncio.gather(_rabbitmq(settings), _postgres(settings))
    return {"rabbitmq": rabbit, "postgresql": postgres}


async def _rabbitmq(settings: Settings) -> str | None:
    async def probe() -> None:
        connection = await aio_pika.connect(settings.amqp_dsn)
        await connection.close()

    where = f"RabbitMQ at {_where(settings.amqp_dsn, 5672)}"
    return await _answers(where, probe, settings.connect_timeout)


async def _postgres(settings: Settings) -> str | None:
    async def probe() -> None:
        connection = await asyncpg.connect(settings.database_dsn)
        await connection.close()

    where = f"PostgreSQL at {_where(settings.database_dsn, 5432)}"
    return await _answers(where, probe, settings.connect_timeout)


async def _answers(where: str, probe: Callable[[], Awaitable[None]], timeout: float) -> str | None:
    try:
        async with asyncio.timeout(timeout):
            await probe()
    except TimeoutError:
        return f"unreachable: {where} did not answer within {timeout:g} s (LAZARUS_CONNECT_TIMEOUT)"
    except Exception as exc:
        return f"unreachable: {where}: {type(exc).__name__}: {exc}".rstrip(": ")
    return None


def _where(dsn: str, default_port: int) -> str:
    """host:port of a service URL, without its user or password."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or default_port}"
