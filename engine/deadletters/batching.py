"""Taking work off a queue in batches, so one statement serves many concurrent jobs."""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def take_batch(pending: asyncio.Queue[T], max_size: int, linger: float) -> list[T]:
    """Up to ``max_size`` items, waiting at most ``linger`` seconds for more than the first.

    Items already queued are taken without a timer: a wait_for per item cost more than
    the insert it feeds under a burst.
    """
    loop = asyncio.get_running_loop()
    batch = [await pending.get()]
    deadline = loop.time() + linger
    while len(batch) < max_size:
        if not pending.empty():
            batch.append(pending.get_nowait())
            continue
        timeout = deadline - loop.time()
        if timeout <= 0:
            break
        try:
            batch.append(await asyncio.wait_for(pending.get(), timeout))
        except TimeoutError:
            break
    return batch
