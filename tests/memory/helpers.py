"""Small waits for tests on the doubles: real time, short, polled."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from engine.testing import Lazarus
from engine.worker.consume import Worker


async def until(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 3.0, what: str = ""
) -> None:
    """Poll ``condition`` every millisecond until true; AssertionError after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.001)


async def replace_worker(lz: Lazarus, *, tracked: bool = True, **options: Any) -> Worker:
    """Stop the harness's worker and start another on the same broker (and, if
    ``tracked``, store): a restart, or a worker without a database (``tracked=False``,
    whose deaths only the recorder stores). The harness stops it when it closes."""
    if lz.worker is not None:
        await lz.worker.stop(grace=0)
    options.setdefault("control_interval", 0.02)
    worker = Worker(
        lz.settings,
        lz.queues,
        store=lz.store if tracked else None,
        broker=lz.broker,
        **options,
    )
    await worker.start()
    lz.worker = worker
    return worker
