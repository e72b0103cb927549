"""Automatic reanimation: some failures cure themselves (a service was down).

A job type may carry a :class:`~engine.retry.Reanimation` rule; the reanimator (in every recording
worker) moves its matching dead letters back on a schedule, at most ``max_times`` per
job, each move a compare-and-set like a person's requeue and written to the audit log
as done by ``lazarus-reanimator``. Off unless a handler declares a rule.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from functools import partial

from engine.amqp.port import BrokerPort
from engine.deadletters.generations import requeued_message
from engine.errors import LazarusError
from engine.outbox.relay import drain
from engine.pg.errors import DB_ERROR
from engine.pg.port import OutboxStore
from engine.registry import registered

log = logging.getLogger("lazarus.reanimate")

REANIMATOR = "lazarus-reanimator"
BATCH = 1000


async def reanimate_once(store: OutboxStore, broker: BrokerPort) -> int:
    """One pass over every registered rule; return how many jobs were moved back."""
    moved = 0
    now = datetime.now(UTC)
    for job_type, handler in registered().items():
        rule = handler.reanimate
        if rule is None:
            continue
        while ids := await store.reanimation_candidates(
            job_type,
            rule.error_types,
            now - timedelta(seconds=rule.after),
            REANIMATOR,
            rule.max_times,
            BATCH,
        ):
            count = await store.stage_requeue(
                ids, REANIMATOR, partial(requeued_message, retries=rule.retries, mode=rule.mode)
            )
            await drain(store, broker)
            await store.audit(
                REANIMATOR,
                "reanimate",
                {"job_type": job_type, "error_types": list(rule.error_types)},
                count,
            )
            moved += count
            if count == 0:
                break  # another reanimator took them
    return moved


async def run_reanimator(store: OutboxStore, broker: BrokerPort, *, interval: float = 30.0) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            moved = await reanimate_once(store, broker)
            if moved:
                log.info("reanimated %d dead jobs", moved)
        except (LazarusError, *DB_ERROR) as exc:
            log.warning("reanimation pass failed: %r", exc)
