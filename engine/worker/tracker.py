"""Job-state tracking in batches: one statement per batch, however many jobs move.

Workers report transitions here instead of writing them one by one. A *claim*
(the RUNNING transition) and a *decisive* report (DEAD, SUSPENDED) wait for their
batch and learn whether they were applied: PostgreSQL refuses a transition older
than what the row holds, so a duplicate copy of a job, a stale generation, or a
failure arriving after a person stopped the job is refused, and the worker drops it.

A value PostgreSQL rejects (a NUL in a JSON payload, say) fails only its own job: the
batch is then written row by row, and a rejected row once more without its payload.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from engine.background import Background
from engine.errors import ServiceUnavailable
from engine.message import JobMessage, now_utc
from engine.outcome import ErrorInfo
from engine.pg.errors import DB_CONFLICT, DB_UNAVAILABLE
from engine.pg.port import WorkerStore
from engine.pg.store import pg_text
from engine.states import JobState

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
# Waits before writing again after PostgreSQL failed: short at first (a dropped
# connection comes back at once, and the transitions waiting meanwhile live only in this
# process), doubling up to the last.
OUTAGE_FIRST_PAUSE, OUTAGE_MAX_PAUSE = 0.05, 1.0
CONFLICT_RETRIES = 3  # new tries of a statement that lost a deadlock or serialization race

# Report tokens: a random prefix per process and a counter, unique without a uuid each.
_token_prefix = uuid.uuid4().hex[:16]
_token_numbers = itertools.count()


def _new_prefix() -> None:
    global _token_prefix
    _token_prefix = uuid.uuid4().hex[:16]


os.register_at_fork(after_in_child=_new_prefix)


def new_token() -> str:
    return f"{_token_prefix}{next(_token_numbers)}"


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
    # Tells this report's own earlier write from another copy's when it is sent again.
    token: str = field(default_factory=new_token)

    @property
    def seq(self) -> int:
        return self.message.attempt * 4 + PHASE[self.state]

    @property
    def order(self) -> tuple[int, int, int]:
        return (self.message.generation, self.seq, self.redeliveries)

    def row(self, *, bare: bool = False) -> tuple[object, ...]:
        """The statement's row; ``bare`` leaves out what PostgreSQL may reject: payload and
        checkpoint, and NUL characters in texts."""
        m, e, cause = self.message, self.error, self.cause
        running = self.state is JobState.RUNNING and not bare
        if bare:
            e = e and replace(
                e, type=pg_text(e.type), message=pg_text(e.message), traceback=pg_text(e.traceback)
            )
            cause = cause and pg_text(cause)
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
            cause,
            self.worker,
            m.created_at,
            self.at if running else None,
            m.checkpoint if running else None,
            self.token,
        )


_Waiter = asyncio.Future[bool]
_Entry = tuple[Transition, _Waiter | None, bool]


def latest_per_job(transitions: list[Transition]) -> dict[str, Transition]:
    """The latest transition of each job (one row per job per statement), in job-id order:
    batches that lock rows in one order cannot deadlock each other."""
    latest: dict[str, Transition] = {}
    for transition in transitions:
        kept = latest.get(transition.message.id)
        if kept is None or transition.order > kept.order:
            latest[transition.message.id] = transition
    return {job_id: latest[job_id] for job_id in sorted(latest)}


# The failures whose report records an attempt (job_attempts) when it carries an error.
RECORDED = (JobState.RETRYING, JobState.DEAD, JobState.SUSPENDED)


def records_attempt(transition: Transition) -> bool:
    return transition.state in RECORDED and transition.error is not None


def rounds(batch: list[_Entry]) -> list[list[_Entry]]:
    """The batch cut into statements written one after the other: a job's transitions stay
    together (the latest wins) up to each failure that carries an error, which ends its
    round. Its attempt is recorded only if its report is written, not merely overtaken by
    the job's next run in the same batch (a retry without delay, a backlog). Most batches
    are one round."""
    per_job: dict[str, list[_Entry]] = {}
    for entry in batch:
        per_job.setdefault(entry[0].message.id, []).append(entry)
    cut: list[list[_Entry]] = []
    for entries in per_job.values():
        entries.sort(key=lambda e: e[0].order)
        index = 0
        for position, entry in enumerate(entries):
            if len(cut) <= index:
                cut.append([])
            cut[index].append(entry)
            if records_attempt(entry[0]) and position < len(entries) - 1:
                index += 1
    return cut


class Tracker:
    """Collects transitions for up to ``linger`` seconds or ``max_batch`` jobs, then writes."""

    def __init__(self, store: WorkerStore, *, max_batch: int = 1000, linger: float = 0.001) -> None:
        self.store = store
        self.max_batch = max_batch
        self.linger = linger
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self._loop = Background("lazarus-tracker")
        self._busy = False  # a batch is off the queue and not written yet
        self.written = 0

    def start(self) -> None:
        self._loop.start(self._run())

    async def stop(self, timeout: float = 10.0) -> None:
        """Let the writer write what is queued (up to ``timeout`` s), then stop it.

        The writer is cancelled only while idle: a batch taken off the queue is never lost
        half-written.
        """
        if not self._loop.started:
            return
        deadline = asyncio.get_running_loop().time() + timeout
        while (self._busy or not self._queue.empty()) and not self._loop.done:
            if asyncio.get_running_loop().time() > deadline:
                log.warning("%d job transitions not written at stop", self._queue.qsize())
                break
            await asyncio.sleep(0.01)
        await self._loop.stop()

    def report(self, transition: Transition) -> None:
        """Record a transition without waiting (a retry, a report after an outage)."""
        self._queue.put_nowait((transition, None, False))

    def report_then(self, transition: Transition, then: Callable[[], None]) -> None:
        """Record a final transition (a success) and call ``then`` once it is written.

        The caller acks the job's message in ``then``, so a worker that dies first leaves
        a copy that finds the job SUCCEEDED, never a RUNNING row for a job that is done.
        While PostgreSQL is unavailable ``then`` runs at once and the transition waits in
        the backlog: availability first, as for a claim.
        """
        waiter: _Waiter = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(lambda _: then())
        self._queue.put_nowait((transition, waiter, False))

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
        pause = OUTAGE_FIRST_PAUSE
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
            if await self._flush(batch):
                pause = OUTAGE_FIRST_PAUSE
            else:  # PostgreSQL is away: do not spin on the backlog, but a blip is short
                await asyncio.sleep(pause)
                pause = min(pause * 2, OUTAGE_MAX_PAUSE)

    async def _flush(self, batch: list[_Entry]) -> bool:
        """Write a batch, round by round (see :func:`rounds`), and settle its waiters; False
        if PostgreSQL could not be reached (what was not written is settled as in an outage)."""
        cut = rounds(batch)
        for index, entries in enumerate(cut):
            if not await self._flush_round(entries):
                # The rounds after it are settled as the whole batch was before rounds
                # existed: claims run, decisive reports fail, the others wait.
                rest = [entry for later in cut[index + 1 :] for entry in later]
                if rest:
                    self._on_outage(rest, ServiceUnavailable("PostgreSQL went away mid-batch"))
                return False
        return True

    async def _flush_round(self, batch: list[_Entry]) -> bool:
        """Write one statement's transitions and settle their waiters; False if PostgreSQL
        could not be reached."""
        latest = latest_per_job([transition for transition, _, _ in batch])
        try:
            applied = await self._write([t.row() for t in latest.values()])
        except DB_UNAVAILABLE as exc:
            self._on_outage(batch, exc)
            await self.store.recover(exc)
            return False
        except Exception as exc:  # a rejected value or a bug: isolate the row at fault
            log.warning(
                "%d job transitions rejected (%r); writing them one by one", len(latest), exc
            )
            return await self._flush_each(batch, latest)
        self._settle(batch, latest, applied)
        return True

    async def _flush_each(self, batch: list[_Entry], latest: dict[str, Transition]) -> bool:
        """Write each job's row in a statement of its own, so a bad row fails only its job."""
        by_job: dict[str, list[_Entry]] = {job_id: [] for job_id in latest}
        for entry in batch:
            by_job[entry[0].message.id].append(entry)
        jobs = list(by_job)
        for index, job_id in enumerate(jobs):
            try:
                applied = await self._write_row(latest[job_id])
            except DB_UNAVAILABLE as exc:  # the rows written so far are settled; the rest wait
                self._on_outage([entry for later in jobs[index:] for entry in by_job[later]], exc)
                await self.store.recover(exc)
                return False
            except Exception as exc:
                state = latest[job_id].state.value
                log.error("job %s: its %s transition cannot be written: %r", job_id, state, exc)
                self._on_outage(by_job[job_id], exc, keep=False)
                continue
            self._settle(by_job[job_id], latest, applied)
        return True

    async def _write_row(self, transition: Transition) -> set[tuple[str, int]]:
        """Write one row; if PostgreSQL rejects it, write it bare, so the job still has its
        state (its payload or checkpoint is what cannot be stored)."""
        try:
            return await self._write([transition.row()])
        except DB_UNAVAILABLE:
            raise
        except Exception as exc:
            log.warning(
                "job %s: transition rejected (%r); writing it without payload and checkpoint",
                transition.message.id,
                exc,
            )
        return await self._write([transition.row(bare=True)])

    async def _write(self, rows: list[tuple[object, ...]]) -> set[tuple[str, int]]:
        """Run the statement, again after a deadlock or serialization failure: PostgreSQL
        rolled it back whole, and a second try usually passes."""
        for retry in range(CONFLICT_RETRIES):
            try:
                return await self._report(rows)
            except DB_CONFLICT as exc:
                log.info("job transitions conflicted (%r); try %d again", exc, retry + 2)
                await asyncio.sleep(random.uniform(0.01, 0.05) * (retry + 1))
        return await self._report(rows)

    async def _report(self, rows: list[tuple[object, ...]]) -> set[tuple[str, int]]:
        applied = await self.store.report(rows)
        self.written += len(applied)
        return applied

    def _settle(
        self, entries: list[_Entry], latest: dict[str, Transition], applied: set[tuple[str, int]]
    ) -> None:
        """Answer waiters: a transition won if it was its job's row and PostgreSQL applied it."""
        for transition, waiter, _ in entries:
            if waiter is not None and not waiter.done():
                won = latest[transition.message.id] is transition
                waiter.set_result(won and (transition.message.id, transition.seq) in applied)

    def _on_outage(
        self,
        batch: list[_Entry],
        exc: BaseException,
        *,
        keep: bool = True,
    ) -> None:
        """Settle a batch that could not be written: claims run anyway, decisive reports
        fail, the other reports (successes with their waiters answered) wait for the next
        pass (``keep``) up to MAX_BACKLOG."""
        if keep:
            log.warning("PostgreSQL unavailable, %d job transitions wait: %r", len(batch), exc)
        for transition, waiter, durable in batch:
            written_later = waiter is None or not (durable or transition.state is JobState.RUNNING)
            if written_later and keep and self._queue.qsize() < MAX_BACKLOG:
                self._queue.put_nowait((transition, None, False))
            if waiter is not None and not waiter.done():
                if durable:
                    job = transition.message.id
                    waiter.set_exception(ServiceUnavailable(f"PostgreSQL, job {job}: {exc!r}"))
                else:
                    waiter.set_result(True)


def started(message: JobMessage, worker: str, redeliveries: int) -> Transition:
    return Transition(message, JobState.RUNNING, worker, redeliveries, at=now_utc())
