"""Retention: nothing Lazarus writes grows forever.

One pass prunes what is older than its ``LAZARUS_RETAIN_*`` age: finished job rows
(succeeded, cancelled, dead: each death stays in ``dead_letters``) with their recorded
attempts, workers' registry rows
not seen for as long, audit entries (never
a bulk operation still running), dead-letter rows a person already acted on (requeued,
deleted) and the copies on ``<ns>.dead.retained``. Rows still dead are never pruned: a
person decides (``lazarus dead purge``). Every recording worker and recorder runs a pass
each ``LAZARUS_PRUNE_INTERVAL``; a PostgreSQL advisory lock lets exactly one process
prune at a time, and the others skip that round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.amqp.port import BrokerPort
from engine.amqp.topology import retained_queue
from engine.errors import LazarusError
from engine.message import H_DIED_AT, now_utc
from engine.pg.errors import DB_ERROR
from engine.pg.store import Store
from engine.settings import Settings

log = logging.getLogger("lazarus.retention")

# What a pass prunes, and the retain_<setting> age that keeps it.
KEPT_BY = (
    ("jobs", "jobs"),
    ("workflows", "jobs"),  # workflows that succeeded or were cancelled, with their steps
    ("attempts", "jobs"),  # attempts of the jobs pruned, or gone, as old as they
    ("workers", "jobs"),  # registry rows of workers not seen for as long
    ("audit", "audit"),
    ("dead_history", "dead_history"),
)


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one pass removed (or, on a dry run, would remove)."""

    jobs: int = 0
    workflows: int = 0
    attempts: int = 0  # job_attempts rows of finished jobs, kept as long as their jobs
    workers: int = 0  # registry rows of workers not seen for LAZARUS_RETAIN_JOBS
    audit: int = 0
    dead_history: int = 0
    dead_copies: int | None = 0  # None on a dry run: copies cannot be counted unread
    busy: bool = False  # another process held the lock: nothing was done

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "workflows": self.workflows,
            "attempts": self.attempts,
            "workers": self.workers,
            "audit": self.audit,
            "dead_history": self.dead_history,
            "dead_copies": self.dead_copies,
            "busy": self.busy,
        }


async def prune(
    settings: Settings, store: Store, broker: BrokerPort | None, *, dry_run: bool = False
) -> Pruned:
    """One pass, under the prune lock; ``broker`` None leaves the retained copies alone."""
    now = now_utc()
    async with store.pruning() as pruner:
        if pruner is None:
            return Pruned(busy=True)
        counts: dict[str, Any] = {}
        for kept, setting in KEPT_BY:
            age = settings.retention(setting)
            if age is None:
                counts[kept] = 0
            elif dry_run:
                counts[kept] = await pruner.count(kept, now - age)
            else:
                counts[kept] = await pruner.delete(kept, now - age)
        copies_age = settings.retention("dead_copies")
        if dry_run:
            counts["dead_copies"] = None
        elif broker is None or copies_age is None:
            counts["dead_copies"] = 0
        else:
            counts["dead_copies"] = await prune_copies(broker, now - copies_age)
    return Pruned(**counts)


async def prune_copies(broker: BrokerPort, before: datetime) -> int:
    """Take copies older than ``before`` from the head of the retained queue.

    The queue is in order of death, so the pass stops at the first younger copy (which
    goes back; on a quorum queue, behind the others) or one without a death time.
    """
    name = retained_queue(broker.ns)
    taken = 0
    async with broker.reader() as reader:
        while (delivery := await reader.get(name)) is not None:
            died = died_at(delivery.headers)
            if died is None or died >= before:
                await delivery.nack(requeue=True)
                break
            await delivery.ack()
            taken += 1
    return taken


def died_at(headers: Mapping[str, Any]) -> datetime | None:
    """When a retained copy's job died: its header, else the time RabbitMQ dead-lettered it."""
    text = headers.get(H_DIED_AT)
    if isinstance(text, str):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        when = deaths[0].get("time")
        if isinstance(when, datetime):
            return when if when.tzinfo else when.replace(tzinfo=now_utc().tzinfo)
    return None


async def run_pruner(settings: Settings, store: Store, broker: BrokerPort) -> None:
    """A pass each prune interval (the first one a minute after start), until cancelled."""
    delay = min(60.0, settings.prune_interval)
    while True:
        await asyncio.sleep(delay)
        delay = settings.prune_interval
        try:
            done = await prune(settings, store, broker)
        except (LazarusError, *DB_ERROR) as exc:
            log.warning("prune pass failed, next in %g s: %r", delay, exc)
            continue
        if not done.busy and any(
            (
                done.jobs,
                done.workflows,
                done.attempts,
                done.audit,
                done.dead_history,
                done.dead_copies,
            )
        ):
            log.info("pruned %s", done.as_dict())
