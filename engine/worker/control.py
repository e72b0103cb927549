"""What a person changes while a worker runs: queue and type pauses, and stopped jobs.

A control loop reads both from PostgreSQL every ``interval`` seconds. Pauses go back
to the worker (which stops or restarts consuming); a job a person suspended or
cancelled while it runs is cancelled here, and marked so the worker acks it instead
of treating the cancel as a shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.background import Background
from engine.message import JobMessage
from engine.pg.port import WorkerStore

log = logging.getLogger("lazarus.worker")


@dataclass(frozen=True, slots=True)
class Pauses:
    """What a person paused: queues no worker consumes, types no worker runs."""

    queues: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()


class Control:
    """The running jobs a person may stop, and the loop that stops them and applies pauses."""

    def __init__(
        self,
        store: WorkerStore,
        apply_pauses: Callable[[Pauses], Awaitable[None]],
        *,
        interval: float = 0.5,
    ) -> None:
        self.store = store
        self.interval = interval
        self._apply_pauses = apply_pauses
        self._running: dict[str, tuple[asyncio.Task[None], JobMessage]] = {}
        self._interrupted: set[str] = set()
        self._background = Background("lazarus-control")

    def start(self) -> None:
        self._background.start(self._loop())

    async def stop(self) -> None:
        await self._background.stop()

    def running(self, message: JobMessage, task: asyncio.Task[None]) -> None:
        """``task`` now runs ``message``: a person's stop of that generation cancels it."""
        self._running[message.id] = (task, message)

    def running_jobs(self) -> list[str]:
        """Ids of the jobs running now, sorted."""
        return sorted(self._running)

    def finished(self, job_id: str) -> None:
        self._running.pop(job_id, None)

    def take_interrupt(self, job_id: str) -> bool:
        """Whether a cancel of this job came from a person (and not from a shutdown)."""
        if job_id not in self._interrupted:
            return False
        self._interrupted.discard(job_id)
        return True

    async def read_pauses(self) -> Pauses | None:
        """Paused queues and types, or None while PostgreSQL does not answer."""
        try:
            queues = frozenset(r["queue"] for r in await self.store.paused_queues())
            types = frozenset(r["job_type"] for r in await self.store.paused_types())
        except Exception as exc:  # PostgreSQL down: the caller keeps the last known pauses
            log.warning("could not read pauses: %r", exc)
            await self.store.recover(exc)
            return None
        return Pauses(queues, types)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._pass()
            except Exception as exc:  # the broker or database is away: try next time
                log.warning("control pass failed: %r", exc)

    async def _pass(self) -> None:
        paused = await self.read_pauses()
        if paused is not None:
            await self._apply_pauses(paused)
        if self._running:
            stopped = await self.store.stopped_among(list(self._running))
            for job_id, generation in stopped.items():
                self._interrupt(job_id, generation)

    def _interrupt(self, job_id: str, generation: int) -> None:
        found = self._running.get(job_id)
        if found is not None and found[1].generation == generation:
            log.info("job %s stopped by a person: cancelling it", job_id)
            self._interrupted.add(job_id)
            found[0].cancel()
