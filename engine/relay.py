"""The relay: publishes staged requeues from the outbox, then marks them sent.

The outbox row is written in the same transaction as the dead letter's status
change, so a requeue is never half done: a crash before the commit leaves the job
dead, a crash after it leaves a row the next relay pass publishes. A crash after
the broker's confirm and before the relay's commit publishes that job once more;
the (job id, generation) idempotency key covers it.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from engine.broker import Broker, Outgoing
from engine.errors import LazarusError
from engine.store import Store
from engine.topology import work_exchange

log = logging.getLogger("lazarus.relay")

BATCH = 1000


async def drain(store: Store, broker: Broker, *, batch: int = BATCH) -> int:
    """Publish every outbox row (pipelined confirms); return how many were sent."""
    sent = 0
    exchange = work_exchange(broker.ns)
    while True:
        async with store.claim_outbox(batch) as rows:
            if not rows:
                return sent
            for queue in {r["queue"] for r in rows}:
                if not broker.topology.knows_work_queue(queue):
                    await broker.declare_work_queue(queue)
            outgoing: list[Outgoing] = [
                (exchange, r["queue"], bytes(r["body"]), None, r["job_id"]) for r in rows
            ]
            await broker.publish_many(outgoing)
            sent += len(rows)


async def run_relay(store: Store, broker: Broker, *, interval: float = 5.0) -> None:
    """Drain the outbox every ``interval`` seconds: finishes requeues whose caller died."""
    while True:
        try:
            sent = await drain(store, broker)
            if sent:
                log.info("relay published %d staged requeues", sent)
        except (LazarusError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("relay pass failed, retrying in %.0f s: %r", interval, exc)
        await asyncio.sleep(interval)
