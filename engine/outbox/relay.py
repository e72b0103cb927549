"""The relay: publishes staged messages from the outbox, then marks them sent.

An outbox row (a requeue, a resume, an enqueue under a unique key) is written in the
same transaction as the change it publishes, so that change is never half done: a crash
before the commit leaves nothing to send, a crash after it leaves a row the next relay
pass publishes. A crash after the broker's confirm and before the relay's commit
publishes that job once more; the (job id, generation) idempotency key covers it.
"""

from __future__ import annotations

import asyncio
import logging

from engine.amqp.port import BrokerPort, Outgoing
from engine.amqp.topology import requested_delay_ms, work_exchange
from engine.errors import LazarusError
from engine.message import now_utc
from engine.pg.errors import DB_ERROR
from engine.pg.port import OutboxStore
from engine.pg.rows import Row

log = logging.getLogger("lazarus.relay")

BATCH = 1000


async def drain(store: OutboxStore, broker: BrokerPort, *, batch: int = BATCH) -> int:
    """Publish every outbox row (pipelined confirms); return how many were sent."""
    sent = 0
    exchange = work_exchange(broker.ns)
    while True:
        async with store.claim_outbox(batch) as rows:
            if not rows:
                return sent
            for queue in {r["queue"] for r in rows}:
                await broker.ensure_work_queue(queue)
            outgoing: list[Outgoing] = [
                (*await _route(broker, exchange, r), bytes(r["body"]), None, r["job_id"])
                for r in rows
            ]
            await broker.publish_many(outgoing)
            sent += len(rows)


async def _route(broker: BrokerPort, exchange: str, row: Row) -> tuple[str, str]:
    """(exchange, routing key) of an outbox row: its work queue, or a delay queue while
    its run-at time (an enqueue's delay) is ahead."""
    run_at = row.get("run_at")
    wait = 0.0 if run_at is None else (run_at - now_utc()).total_seconds()
    if wait > 0:
        return await broker.delay_route(row["queue"], requested_delay_ms(wait))
    return exchange, row["queue"]


class Follower:
    """Drains the outbox while a caller keeps staging into it.

    A bulk requeue stages batch k+1 in PostgreSQL while batch k waits for the broker's
    confirms, instead of the two taking turns. Use as ``async with Follower(...) as f``
    and ``await f.staged(n)`` after each commit of n rows: it returns at once while
    publishing is at most ``max_ahead`` rows behind, else waits, so the outbox stays
    small. Leaving the block publishes the rest and raises what the publishing raised;
    whatever is not published stays in the outbox for the relay.
    """

    def __init__(
        self, store: OutboxStore, broker: BrokerPort, *, max_ahead: int = 2 * BATCH
    ) -> None:
        self._store = store
        self._broker = broker
        self._max_ahead = max_ahead
        self._ahead = 0  # rows staged and not yet seen leave the outbox
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._finished = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Follower:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, exc_type: object, *_: object) -> None:
        assert self._task is not None
        if exc_type is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            return
        self._finished = True
        self._wake.set()
        await self._task

    async def staged(self, rows: int) -> None:
        """``rows`` were committed to the outbox; raises if publishing already failed."""
        self._ahead += rows
        self._wake.set()
        while self._ahead > self._max_ahead:
            self._raise_failure()
            self._progress.clear()
            await self._progress.wait()
        self._raise_failure()

    def _raise_failure(self) -> None:
        assert self._task is not None
        if self._task.done():
            self._task.result()

    async def _run(self) -> None:
        try:
            while not self._finished or self._wake.is_set():
                await self._wake.wait()
                self._wake.clear()
                before = self._ahead
                await drain(self._store, self._broker)
                # drain() returns once it finds the outbox empty: every row staged before
                # it started is published, by it or by another relay that holds it.
                self._ahead -= before
                self._progress.set()
        finally:
            self._progress.set()  # a waiting staged() sees the failure


async def run_relay(store: OutboxStore, broker: BrokerPort, *, interval: float = 5.0) -> None:
    """Drain the outbox every ``interval`` seconds: finishes the publishes whose caller died
    (or did not wait); a failed pass is logged and tried again, the rows wait."""
    while True:
        try:
            sent = await drain(store, broker)
            if sent:
                log.info("relay published %d staged messages", sent)
        except (LazarusError, *DB_ERROR) as exc:
            log.warning("relay pass failed, retrying in %.0f s: %r", interval, exc)
        await asyncio.sleep(interval)
