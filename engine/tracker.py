"""Job-state tracking in batches: one statement per batch, however many jobs move.

Workers report transitions here instead of writing them one by one. A *claim*
(the RUNNING transition) and a *decisive* report (DEAD, SUSPENDED) wait for their
batch and learn whether they were applied: PostgreSQL refuses a transition older
than what the row holds, so a duplicate copy of a job, a stale generation, or a
failure arriving after a person stopped the job is refused, and the worker drops it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from engine.errors import ServiceUnavailable
from engine.executor import ErrorInfo
from engine.message import JobMessage, now_utc
from engine.states import JobState
from engine.store import Store

log = logging.getLogger("lazarus.tracker")

# Phases of one attempt; a transition's seq is attempt * 4 + phase.
PHASE = {
    JobState.PENDING: 0,
    JobState.RUNNING: 1,
    JobState.RETRYING: 2,
    JobState.SUCCEEDED: 3,
    JobState.DEAD: 3,
    JobState.SUSPENDED: 3,
}
MAX_BACKLOG = 50_000  # fire-and-forget reports kept while PostgreSQL is down

_DB_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ServiceUnavailable)


@dataclass(frozen=True, slots=True)
class Transition:
    """A job entering ``state`` on this worker."""

    message: JobMessage
    state: JobState
    worker: str
    redeliveries: int = 0
    error: ErrorInfo | None = None
    cause: str | None = None
    at: datetime | None = None

    @property
    def seq(self) -> int:
        return self.message.attempt * 4 + PHASE[self.state]

    @property
    def order(self) -> tuple[int, int, int]:
        return (self.message.generation, self.seq, self.redeliveries)

    def row(self) -> tuple[object, ...]:
        m, e = self.message, self.error
        running = self.state is JobState.RUNNING
        return (
            m.id,
            m.generation,
            self.seq,
            self.redeliveries,
            m.type,
            m.queue,
            self.state.value,
            m.attempt,
            m.max_retries,
            m.payload if running else None,
            m.suspend_on_failure,
            e.type if e else None,
            e.message if e else None,
            e.traceback if e else None,
            self.cause,
            self.worker,
            m.created_at,
            self.at if running else None,
            m.checkpoint if running else None,
        )


_Waiter = asyncio.Future[bool]


class Tracker:
    """Collects transitions for up to ``linger`` seconds or ``max_batch`` jobs, then writes."""

    def __init__(self, store: Store, *, max_batch: int = 1000, linger: float = 0.005) -> None:
        self.store = store
        self.max_batch = max_batch
        self.linger = linger
        self._queue: asyncio.Queue[tuple[Transition, _Waiter | None, bool]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._busy = False  # a batch is off the queue and not written yet
        self.written = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lazarus-tracker")

    async def stop(self, timeout: float = 10.0) -> None:
        """Let the writer write what is queued (up to ``timeout`` s), then stop it.

        The writer is cancelled only while idle: a batch taken off the queue is never lost
        half-written.
        """
        if self._task is None:
            return
        deadline = asyncio.get_running_loop().time() + timeout
        while (self._busy or not self._queue.empty()) and not self._task.done():
            if asyncio.get_running_loop().time() > deadline:
                log.warning("%d job transitions not written at stop", self._queue.qsize())
                break
            await asyncio.sleep(0.01)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    def report(self, transition: Transition) -> None:
        """Record a transition without waiting (progress, success, retry)."""
        self._queue.put_nowait((transition, None, False))

    async def claim(self, transition: Transition) -> bool:
        """Record a RUNNING transition and say whether this copy may run.

        If PostgreSQL cannot be reached the job runs anyway: availability first.
        """
        waiter: _Waiter = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((transition, waiter, False))
        return await waiter

    async def decide(self, transition: Transition) -> bool:
        """Record a decisive transition durably; False if a later state (a person's stop)
        holds. Raises ServiceUnavailable if it cannot be written."""
        waiter: _Waiter = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((transition, waiter, True))
        return await waiter

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._busy = False
            batch = [await self._queue.get()]
            self._busy = True
            deadline = loop.time() + self.linger
            while len(batch) < self.max_batch:
                if self._queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    await asyncio.sleep(min(remaining, 0.001))
                    continue
                batch.append(self._queue.get_nowait())
            if not await self._flush(batch):
                await asyncio.sleep(1.0)  # PostgreSQL is down: do not spin on the backlog

    async def _flush(self, batch: list[tuple[Transition, _Waiter | None, bool]]) -> bool:
        """Write a batch and settle its waiters; False if PostgreSQL could not be reached."""
        # One row per job per statement: keep the latest transition of each job.
        latest: dict[str, Transition] = {}
        for transition, _, _ in batch:
            kept = latest.get(transition.message.id)
            if kept is None or transition.order > kept.order:
                latest[transition.message.id] = transition
        try:
            applied = await self.store.report([t.row() for t in latest.values()])
        except _DB_DOWN as exc:
            self._on_outage(batch, exc)
            return False
        except Exception as exc:  # a bug or a rejected value: never leave a claim hanging
            log.exception("job transitions rejected by PostgreSQL; %d not written", len(batch))
            self._on_outage(batch, exc, keep=False)
            return True
        self.written += len(applied)
        for transition, waiter, _ in batch:
            if waiter is not None and not waiter.done():
                won = latest[transition.message.id] is transition
                waiter.set_result(won and (transition.message.id, transition.seq) in applied)
        return True

    def _on_outage(
        self,
        batch: list[tuple[Transition, _Waiter | None, bool]],
        exc: BaseException,
        *,
        keep: bool = True,
    ) -> None:
        """Settle a batch that could not be written: claims run anyway, decisive reports
        fail, progress reports wait for the next pass (``keep``) up to MAX_BACKLOG."""
        if keep:
            log.warning("PostgreSQL unavailable, %d job transitions wait: %r", len(batch), exc)
        for transition, waiter, durable in batch:
            if waiter is None:
                if keep and self._queue.qsize() < MAX_BACKLOG:
                    self._queue.put_nowait((transition, None, False))
            elif not waiter.done():
                if durable:
                    waiter.set_exception(ServiceUnavailable(f"PostgreSQL: {exc!r}"))
                else:
                    waiter.set_result(True)


def started(message: JobMessage, worker: str, redeliveries: int) -> Transition:
    return Transition(message, JobState.RUNNING, worker, redeliveries, at=now_utc())
