"""Example handlers: one that succeeds, one that fails transiently then succeeds,
one that always fails, and one that calls a TCP service and can time out.

Run them with ``lazarus worker handlers.examples``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from engine import JobContext, Permanent, RetryPolicy, Transient, handler

log = logging.getLogger("lazarus.examples")


@handler("noop")
async def noop(ctx: JobContext) -> None:
    """Does nothing: the cheapest job, used by the benchmarks."""


@handler("greet")
async def greet(ctx: JobContext) -> str:
    """Always succeeds."""
    name = (ctx.payload or {}).get("name", "world")
    log.info("hello, %s (job %s)", name, ctx.job_id)
    return f"hello, {name}"


@handler(
    "flaky",
    policy=RetryPolicy(attempts=5, backoff=0.05, backoff_max=0.5, max_retries=3, retry_delay=1.0),
)
async def flaky(ctx: JobContext) -> None:
    """Fails transiently ``fail_times`` times (counted over in-process tries), then succeeds."""
    fail_times = int((ctx.payload or {}).get("fail_times", 2))
    if ctx.try_number <= fail_times:
        # Logged here so that the demo shows its in-process retries: the engine logs
        # broker retries and deaths, not the tries within one run.
        log.info("flaky: try %d of attempt %d fails on purpose", ctx.try_number, ctx.attempt)
        raise Transient(f"flaky: try {ctx.try_number} of {fail_times + 1} fails on purpose")
    log.info("flaky: try %d of attempt %d succeeds", ctx.try_number, ctx.attempt)


@handler("always_fails", policy=RetryPolicy(attempts=1, max_retries=2, retry_delay=0.5))
async def always_fails(ctx: JobContext) -> None:
    """Fails every time; dead-lettered once its broker retries are spent."""
    raise RuntimeError(f"always_fails: attempt {ctx.attempt} fails on purpose")


@handler("invalid_input")
async def invalid_input(ctx: JobContext) -> None:
    """Fails permanently: no retry at all, straight to the dead letters."""
    raise Permanent(f"payload {json.dumps(ctx.payload)} can never be processed")


@handler(
    "tcp_ping",
    policy=RetryPolicy(
        transient=(ConnectionError, OSError), attempts=3, timeout=2.0, max_retries=2
    ),
)
async def tcp_ping(ctx: JobContext) -> dict[str, Any]:
    """Opens a TCP connection to ``host:port`` and reads a line; may time out or be refused."""
    payload = ctx.payload or {}
    host, port = payload.get("host", "127.0.0.1"), int(payload.get("port", 5672))
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload.get("send", "").encode())
        await writer.drain()
        line = await reader.read(64) if payload.get("read") else b""
    finally:
        writer.close()
        await writer.wait_closed()
    return {"host": host, "port": port, "read": line.decode(errors="replace")}
