"""A worker stores the deaths it decides, many per statement, before publishing their copies.

A death stored here needs one copy on the broker (to ``<ns>.dead``, one queue) instead
of two and the recorder's consume (``<ns>.dead.record`` feeds the recorder as well).
Every death of a moment goes into one INSERT, so a burst costs a round trip per
batch, not per job. While PostgreSQL fails, :meth:`DeadLetterWriter.write` raises
at once for a few seconds, and the worker sends its deaths the recorder's way.
"""

from __future__ import annotations

import asyncio
import logging

from engine.background import Background
from engine.deadletters.batching import take_batch
from engine.deadletters.records import store_dead
from engine.errors import ServiceUnavailable
from engine.pg.port import WorkerStore
from engine.pg.store import DeadRecord

log = logging.getLogger("lazarus.deadletters")

_Item = tuple[DeadRecord, asyncio.Future[None]]


class DeadLetterWriter:
    """Batches dead-letter rows for one worker process.

    ``timeout`` bounds a write (a database that hangs must not hold the worker's
    slots); after a failure the writer refuses for ``pause`` seconds.
    """

    def __init__(
        self,
        store: WorkerStore,
        *,
        max_batch: int = 500,
        linger: float = 0.002,
        timeout: float = 5.0,
        pause: float = 5.0,
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self.linger = linger
        self.timeout = timeout
        self.pause = pause
        self.stored = 0
        self._pending: asyncio.Queue[_Item] = asyncio.Queue()
        self._loop = Background("lazarus-dead-writer")
        self._refuse_until = 0.0
        self._last_error = ""

    def start(self) -> None:
        self._loop.start(self._run())

    async def stop(self) -> None:
        await self._loop.stop()
        while not self._pending.empty():
            _, waiter = self._pending.get_nowait()
            if not waiter.done():
                waiter.set_exception(ServiceUnavailable("the dead-letter writer stopped"))

    async def write(self, record: DeadRecord) -> None:
        """Return once the row is committed (or was there already); ServiceUnavailable if not."""
        loop = asyncio.get_running_loop()
        if not self._loop.started or loop.time() < self._refuse_until:
            raise ServiceUnavailable(f"PostgreSQL failed a moment ago: {self._last_error}")
        waiter: asyncio.Future[None] = loop.create_future()
        self._pending.put_nowait((record, waiter))
        await waiter

    async def _run(self) -> None:
        while True:
            batch = await take_batch(self._pending, self.max_batch, self.linger)
            try:
                self.stored += await asyncio.wait_for(
                    store_dead(self.store, [record for record, _ in batch]), self.timeout
                )
            except Exception as exc:  # down, hanging, or a bug: the recorder's way is safe
                await self.store.recover(exc)
                self._refuse_until = asyncio.get_running_loop().time() + self.pause
                self._last_error = repr(exc)
                log.warning(
                    "could not store %d dead letters (%r); they go to the recorder's queue, "
                    "and so does every death for the next %.0f s",
                    len(batch),
                    exc,
                    self.pause,
                )
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_exception(ServiceUnavailable(f"PostgreSQL: {exc!r}"))
                continue
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_result(None)
