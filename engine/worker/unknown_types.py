"""Jobs of a type this worker does not know: back to their queue, for a worker that does.

During a rolling deploy old and new workers share queues, so a worker may get a job
whose handler only the new ones have. Such a job is published again, body untouched,
through its queue's delay queues (backoff 1 s doubling to 30 s, never held in an
unacked message) and acked. It dies as ``unknown job type`` only once nobody has run
it for ``LAZARUS_UNKNOWN_TYPE_GRACE`` seconds from the first time it was turned back,
and no live worker in the workers' registry knows its type.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from engine.amqp.port import BrokerPort
from engine.amqp.topology import delay_tier_ms
from engine.message import H_UNKNOWN_BOUNCES, H_UNKNOWN_SINCE, MAX_COUNT, JobMessage, now_utc
from engine.pg.errors import DB_ERROR
from engine.pg.port import WorkerStore
from engine.pg.workers import ALIVE_WITHIN

log = logging.getLogger("lazarus.unknown_types")

MAX_BACKOFF = 30.0
CLAIMS_TTL = 10.0  # seconds the registry's answer is reused


def first_turned_back(headers: Mapping[str, Any] | None) -> datetime | None:
    text = (headers or {}).get(H_UNKNOWN_SINCE)
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else None


def bounces(headers: Mapping[str, Any] | None) -> int:
    count = (headers or {}).get(H_UNKNOWN_BOUNCES)
    return count if isinstance(count, int) and 0 <= count <= MAX_COUNT else 0


class UnknownTypes:
    """Decides, and carries out, what happens to a job whose type this worker lacks."""

    def __init__(self, broker: BrokerPort, store: WorkerStore | None, grace: float) -> None:
        self.broker = broker
        self.store = store
        self.grace = grace
        self._claims: tuple[float, set[str]] | None = None

    async def known_elsewhere(self, job_type: str) -> bool:
        """Whether a live worker in the registry knows ``job_type`` (False without one)."""
        if self.store is None:
            return False
        now = now_utc()
        if self._claims is None or now.timestamp() - self._claims[0] > CLAIMS_TTL:
            try:
                rows = await self.store.list_workers(
                    now - timedelta(seconds=ALIVE_WITHIN),
                    now - timedelta(seconds=ALIVE_WITHIN),
                    1000,
                )
            except DB_ERROR as exc:
                log.warning("workers' registry unreadable (%r): grace period only", exc)
                return False
            types = {t for r in rows if r["alive"] for t in (r["job_types"] or {})}
            self._claims = (now.timestamp(), types)
        return job_type in self._claims[1]

    async def turn_back(
        self, message: JobMessage, body: bytes, headers: Mapping[str, Any] | None
    ) -> bool:
        """Publish the job back to its queue after a backoff and return True, or return
        False when its grace is over and no live worker knows its type (it dies)."""
        since = first_turned_back(headers) or now_utc()
        waited = (now_utc() - since).total_seconds()
        if waited >= self.grace and not await self.known_elsewhere(message.type):
            return False
        count = bounces(headers)
        delay = min(MAX_BACKOFF, 2.0**count)
        exchange, key = await self.broker.delay_route(message.queue, delay_tier_ms(delay))
        marks = {H_UNKNOWN_SINCE: since.isoformat(), H_UNKNOWN_BOUNCES: count + 1}
        await self.broker.publish(exchange, key, body, marks, message.id)
        log.info(
            "job %s: type %r unknown to this worker; back to queue %s in %g s for a worker "
            "that knows it (turned back %d times since %s)",
            message.id, message.type, message.queue, delay, count + 1, since.isoformat(),
        )  # fmt: skip
        return True
