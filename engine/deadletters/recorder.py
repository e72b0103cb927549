"""The recorder: moves dead letters from ``<ns>.dead.recorder`` into PostgreSQL, once each.

What reaches it: whatever RabbitMQ dead-letters by itself, and the deaths a worker
could not store (no database, or PostgreSQL down). A worker with a database stores
its deaths itself (engine.deadletters.writer), and their copies never reach this queue.

It stores a batch in one statement (``ON CONFLICT (job_id, generation) DO NOTHING``),
commits, then acks the batch. While PostgreSQL is down it acks nothing: the queue
holds the backlog and the recorder retries with backoff, saying so in the log.
Crash after the commit and before the ack: the batch is redelivered and ignored.
A batch PostgreSQL rejects for a value of one of its records (a NUL, a text too long
for an index) is stored record by record, the rejected one in a bare form that fits
(engine.deadletters.records.store_dead): one record never holds back the ones behind it.
Any other failure (PostgreSQL shutting down, too many connections, a bug) is logged
with its traceback and retried the same way: a batch is acked only once stored.
"""

from __future__ import annotations

import asyncio
import logging

from engine import metrics
from engine.amqp.port import BrokerPort, Consumers, Delivery
from engine.amqp.topology import recorder_queue
from engine.background import Background
from engine.deadletters.batching import take_batch
from engine.deadletters.records import dead_record, store_dead
from engine.pg.port import WorkerStore
from engine.pg.store import DB_UNAVAILABLE, DeadRecord

log = logging.getLogger("lazarus.recorder")


class Recorder:
    """Consumes the recorder queue in batches of up to ``batch_size``."""

    def __init__(
        self, broker: BrokerPort, store: WorkerStore, *, batch_size: int = 500, linger: float = 0.05
    ) -> None:
        self.broker = broker
        self.store = store
        self.batch_size = batch_size
        self.linger = linger
        self.recorded = 0
        self._pending: asyncio.Queue[Delivery] = asyncio.Queue()
        self._consumers: Consumers | None = None
        self._loop = Background("lazarus-recorder")
        self._consumer_tag: str | None = None

    async def start(self) -> None:
        self._consumers = await self.broker.consumers(prefetch=self.batch_size * 2)
        self._consumer_tag = await self._consumers.consume(
            recorder_queue(self.broker.ns), self._pending.put
        )
        self._loop.start(self._run(), when_done=_log_death)

    async def stop(self) -> None:
        await self._loop.stop()
        if self._consumers is not None:
            await self._consumers.close()  # unacked dead letters go back to the queue

    async def _run(self) -> None:
        while True:
            await self._store(await take_batch(self._pending, self.batch_size, self.linger))

    async def _store(self, batch: list[Delivery]) -> None:
        """Store the batch, retrying with backoff until it is stored; then ack it."""
        delay = 0.5
        traced = False  # a traceback of this failure streak is already in the log
        while True:
            try:
                records = [dead_record(d.body, d.message_id, d.headers or {}) for d in batch]
                stored = await self._insert(records)
                break
            except Exception as exc:
                traced = _log_failure(exc, len(batch), delay, traced=traced)
                await self.store.recover(exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        self.recorded += stored
        metrics.DEAD_LETTERS_RECORDED.inc(stored)
        # One multiple-ack covers the batch: every earlier delivery on this channel is in it.
        last = max(batch, key=lambda d: d.delivery_tag or 0)
        try:
            await last.ack(multiple=True)
        except Exception as exc:  # the channel died: redelivery, and the insert ignores them
            log.warning(
                "ack of %d dead letters failed (%r); they will be redelivered", len(batch), exc
            )

    async def _insert(self, records: list[DeadRecord]) -> int:
        return await store_dead(self.store, records)


def _log_failure(exc: Exception, waiting: int, delay: float, *, traced: bool) -> bool:
    """An outage is a warning; anything else gets its traceback once per failure streak.
    Returns whether this streak's traceback is now logged."""
    if isinstance(exc, DB_UNAVAILABLE):
        what = "PostgreSQL unavailable"
    elif traced:
        what = "storing dead letters failed again"
    else:
        log.error(
            "storing %d dead letters failed, they wait in RabbitMQ unacked; retrying in %.1f s",
            waiting,
            delay,
            exc_info=exc,
        )
        return True
    log.warning(
        "%s, %d dead letters wait in RabbitMQ unacked; retrying in %.1f s: %r",
        what,
        waiting,
        delay,
        exc,
    )
    return traced


def _log_death(task: asyncio.Task[None]) -> None:
    """Nothing awaits the recorder task until stop(): say so if it ends on its own."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("the recorder stopped; dead letters are no longer stored", exc_info=exc)
    else:
        log.error("the recorder stopped; dead letters are no longer stored")
