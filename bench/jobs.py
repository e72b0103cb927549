"""Lazarus handlers of the benchmark, loaded by :mod:`bench.lazarus_worker`.

``noop`` is the same empty job as ``handlers.examples.noop`` plus the completion
probe every other system's benchmark task also calls; the bench worker loads this
module instead of ``handlers.examples`` (one type, one handler).
"""

from __future__ import annotations

import asyncio

from bench import probe
from engine import JobContext, Permanent, handler
from engine.message import now_utc


@handler("noop")
async def noop(ctx: JobContext) -> None:
    probe.finished()


@handler("bench_latency")
async def latency(ctx: JobContext) -> None:
    """Records enqueue-to-start latency: the message's created_at against the clock now."""
    probe.started((now_utc() - ctx.message.created_at).total_seconds())
    probe.finished()


@handler("bench_sleep")
async def sleep(ctx: JobContext) -> None:
    """Holds a worker slot for ``seconds`` without using CPU: jobs in flight, for memory."""
    probe.started()
    await asyncio.sleep(float((ctx.payload or {}).get("seconds", 1.0)))
    probe.finished()


@handler("bench_die")
async def die(ctx: JobContext) -> None:
    """Fails permanently: straight to the dead letters, for the dead-letter burst."""
    probe.finished()
    raise Permanent("bench_die dies on purpose")
