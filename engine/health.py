"""Whether the services answer: used by ``lazarus check`` and the HTTP health endpoint."""

from __future__ import annotations

import asyncio

import aio_pika
import asyncpg

from engine.settings import Settings

TIMEOUT = 5.0


async def check_services(settings: Settings) -> dict[str, str | None]:
    """Map each service to None when it answers, else to what went wrong."""
    rabbit, postgres = await asyncio.gather(_rabbitmq(settings), _postgres(settings))
    return {"rabbitmq": rabbit, "postgresql": postgres}


async def _rabbitmq(settings: Settings) -> str | None:
    try:
        async with asyncio.timeout(TIMEOUT):
            connection = await aio_pika.connect(settings.amqp_dsn)
            await connection.close()
    except Exception as exc:
        return f"unreachable: {exc!r}"
    return None


async def _postgres(settings: Settings) -> str | None:
    try:
        async with asyncio.timeout(TIMEOUT):
            connection = await asyncpg.connect(settings.database_dsn)
            await connection.close()
    except Exception as exc:
        return f"unreachable: {exc!r}"
    return None
