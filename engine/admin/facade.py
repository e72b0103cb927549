"""What people and scripts do with dead letters; the CLI and the HTTP API both call this.

Every change of a dead letter is a compare-and-set on its status, so concurrent
callers get one winner and the others a count of zero (or JobStateConflict
where they named the job).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import getpass
import os
import socket
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Generic

from typing_extensions import TypeVar

from engine.admin.lifecycle import Lifecycle
from engine.admin.rows import AuditEntry, DeadGroup, DeadLetter, DeadLetterSummary, WorkerRow
from engine.admin.workflows import Workflows
from engine.amqp.broker import Broker
from engine.amqp.port import BrokerPort
from engine.deadletters.generations import requeued_message
from engine.errors import JobNotFound, JobStateConflict
from engine.filters import DeadFilter
from engine.message import is_queue_name, now_utc
from engine.outbox.relay import Follower, drain
from engine.pg.port import AdminStore, needs_postgres
from engine.pg.store import Store
from engine.pg.workers import ALIVE_WITHIN
from engine.settings import Settings, load_settings
from engine.states import DeadStatus, RequeueMode

BATCH = 1000
S = TypeVar("S", bound=AdminStore, default=Store)
Progress = Callable[[int], None]


def default_actor() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}"


class Admin(Generic[S]):
    """Dead-letter operations over one store and broker. Use as ``async with Admin() as admin``.

    ``Admin()`` opens its own PostgreSQL store and RabbitMQ broker; :meth:`over` works on
    ports someone else owns (an in-memory pair in tests). The type parameter is the store's
    class, so ``Admin`` alone means the PostgreSQL one.
    """

    store: S

    def __init__(
        self: Admin[Store],
        settings: Settings | None = None,
        *,
        actor: str | None = None,
        broker: bool = True,
        statement_timeout: float | None = None,
    ) -> None:
        """``broker=False`` opens PostgreSQL only: enough to read dead letters and jobs,
        while RabbitMQ is unreachable. ``statement_timeout`` bounds every query (seconds)."""
        self.settings = settings or load_settings()
        self.actor = actor or default_actor()
        self.store = Store(self.settings, statement_timeout=statement_timeout, plan_each_time=True)
        self.broker: BrokerPort = Broker(self.settings, name="lazarus-admin")
        self._with_broker = broker
        self._owns_ports = True

    @classmethod
    def over(cls, store: S, broker: BrokerPort, *, settings: Settings, actor: str) -> Admin[S]:
        """An Admin on ports it does not own: entering and leaving it neither connects nor
        closes them (their owner does)."""
        admin: Admin[S] = cls.__new__(cls)
        admin.settings = settings
        admin.actor = actor
        admin.store = store
        admin.broker = broker
        admin._with_broker = True
        admin._owns_ports = False
        return admin

    @property
    def workflows(self) -> Workflows:
        """Workflow control (start, retry, suspend, resume, cancel, restart) with this
        admin's ports and actor."""
        return Workflows(self)

    @property
    def jobs(self) -> Lifecycle:
        """Job, queue and type control (suspend, resume, cancel, pause) with this admin's
        ports and actor: the one facade's second half."""
        return Lifecycle(self)

    def acting_as(self, actor: str) -> Admin[S]:
        """The same connections, with ``actor`` written to the audit log and status changes."""
        twin = copy.copy(self)
        twin.actor = actor
        return twin

    async def __aenter__(self) -> Admin[S]:
        if not self._owns_ports:
            return self
        store = needs_postgres(self.store, "opening the store")
        await store.connect()
        if not self._with_broker:
            return self
        try:
            await self.broker.connect()
        except BaseException:
            await store.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if not self._owns_ports:
            return
        if self._with_broker:
            await self.broker.close()
        await needs_postgres(self.store, "closing the store").close()

    async def list_dead(
        self, selector: DeadFilter, *, limit: int = 50, before_id: int | None = None
    ) -> list[DeadLetterSummary]:
        """Matching dead letters, newest first; pass the last id seen as ``before_id``."""
        rows = await self.store.list_dead(selector, limit=limit, before_id=before_id)
        return [DeadLetterSummary.from_row(r) for r in rows]

    async def show(self, job_id: str) -> list[DeadLetter]:
        """Every death of a job, oldest generation first."""
        rows = await self.store.history(job_id)
        if not rows:
            raise JobNotFound(f"no dead letter for job {job_id!r}")
        return [DeadLetter.from_row(r) for r in rows]

    async def groups(
        self, selector: DeadFilter, *, newest: int = 20_000, limit: int = 20
    ) -> list[DeadGroup]:
        """The newest matching dead letters by (job type, error type): n, first_died,
        last_died."""
        store = needs_postgres(self.store, "grouping dead letters")
        rows = await store.dead_groups(selector, newest=newest, limit=limit)
        return [DeadGroup.from_row(r) for r in rows]

    async def suspended_groups(self, limit: int = 20) -> list[DeadGroup]:
        """Suspended jobs by (job type, error type or a person's stop)."""
        store = needs_postgres(self.store, "grouping suspended jobs")
        return [DeadGroup.from_row(r) for r in await store.suspended_groups(limit)]

    async def count(self, selector: DeadFilter, *, cap: int | None = None) -> int:
        """Matching dead letters; with ``cap``, more than ``cap`` only says "many"."""
        return await self.store.count_dead(selector, cap)

    async def requeue(
        self,
        selector: DeadFilter,
        *,
        retries: int | None = None,
        mode: RequeueMode = RequeueMode.RESTART,
        rate: float | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Move matching dead jobs back to their queues; return how many moved.

        ``retries`` is the new broker-retry budget (default: the job's own). Rows are
        streamed in batches of BATCH; ``rate`` caps jobs per second.
        """
        if retries is not None and retries < 0:
            raise ValueError(f"retries must not be negative, got {retries}")
        selector = replace(selector, status=DeadStatus.DEAD)

        what = selector.describe() | {"mode": mode.value, "retries": retries}
        async with Follower(self.store, self.broker, max_ahead=2 * BATCH) as follower:

            async def stage(ids: list[int]) -> int:
                moved = await self.store.stage_requeue(
                    ids, self.actor, lambda row: requeued_message(row, retries, mode)
                )
                await follower.staged(moved)
                return moved

            return await self._each_batch("requeue", what, selector, stage, rate, progress)

    async def requeue_one(
        self, job_id: str, *, retries: int | None = None, mode: RequeueMode = RequeueMode.RESTART
    ) -> None:
        """Requeue one job, or say why not (JobNotFound, JobStateConflict)."""
        if await self.requeue(DeadFilter(ids=(job_id,)), retries=retries, mode=mode) == 0:
            raise await self.why_not(job_id, "requeue")

    async def delete(self, selector: DeadFilter, *, progress: Progress | None = None) -> int:
        """Mark matching dead letters deleted (kept as history until purged)."""
        selector = replace(selector, status=DeadStatus.DEAD)

        async def mark(ids: list[int]) -> int:
            return await self.store.mark_deleted(ids, self.actor)

        return await self._each_batch("delete", selector.describe(), selector, mark, None, progress)

    async def delete_one(self, job_id: str) -> None:
        if await self.delete(DeadFilter(ids=(job_id,))) == 0:
            raise await self.why_not(job_id, "delete")

    async def purge(self, older_than: timedelta) -> int:
        """Remove rows (any status but a requeue in progress) that died before now - older_than."""
        total = await self.store.purge(datetime.now(UTC) - older_than)
        await self.store.audit(
            self.actor, "purge", {"older_than_seconds": older_than.total_seconds()}, total
        )
        return total

    async def note(self, action: str, details: dict[str, Any]) -> None:
        """Write an audit entry for an action that changes no dead letter (a login)."""
        await self.store.audit(self.actor, action, details, 1)

    async def end_session(self, sid: str, expires: datetime) -> None:
        """A logout: the dashboard session ``sid`` is refused from now on."""
        await needs_postgres(self.store, "ending a dashboard session").end_session(sid, expires)
        await self.note("logout", {"session": sid[:8]})

    async def session_ended(self, sid: str) -> bool:
        return await needs_postgres(self.store, "checking a dashboard session").session_ended(sid)

    async def list_workers(self, limit: int = 100) -> list[WorkerRow]:
        """Workers seen in the last day, the ones alive first: who handles what, where."""
        now = now_utc()
        rows = await self.store.list_workers(
            now - timedelta(days=1), now - timedelta(seconds=ALIVE_WITHIN), limit
        )
        return [WorkerRow.from_row(r) for r in rows]

    async def audit_log(self, limit: int = 20, before_id: int | None = None) -> list[AuditEntry]:
        """Audit entries newest first: who did what, to how many, and whether it finished
        ('running' while it goes, 'done', or 'interrupted'); page with ``before_id``."""
        return [AuditEntry.from_row(r) for r in await self.store.audit_recent(limit, before_id)]

    async def relay(self) -> int:
        """Publish requeues a crashed caller staged but did not send."""
        return await drain(self.store, self.broker)

    async def _each_batch(
        self,
        action: str,
        described: dict[str, Any],
        selector: DeadFilter,
        apply: Callable[[list[int]], Any],
        rate: float | None,
        progress: Progress | None,
    ) -> int:
        """Apply ``apply`` to the rows matching ``selector`` when the walk began, in batches.

        Rows added later (a requeued job that dies again gets a new row) are never walked:
        the operation ends, and a dry run's count is what it moves on a quiet system. The
        audit entry is written first and kept up to date, so an interrupted run says how
        far it got.
        """
        entry = await self.store.audit_begin(self.actor, action, described)
        total, after, state = 0, 0, "interrupted"
        try:
            last = await self.store.last_dead_id()
            loop = asyncio.get_running_loop()
            started = loop.time()
            batch = BATCH if rate is None else max(1, min(BATCH, int(rate)))
            while ids := await self.store.matching_ids(
                selector, after_id=after, upto_id=last, limit=batch
            ):
                after = ids[-1]
                total += await apply(ids)
                await self.store.audit_progress(entry, total)
                if progress is not None:
                    progress(total)
                if rate is not None:
                    # Sleep until the average rate since the start is back under the cap.
                    ahead = total / rate - (loop.time() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            state = "done"
        finally:
            with contextlib.suppress(Exception):  # an outage must not hide the first error
                await self.store.audit_progress(entry, total, state)
        return total

    async def unmoved(self, job_ids: list[str]) -> list[str]:
        """Why each of ``job_ids`` was not moved by this admin: it is unknown, or no longer
        dead because another caller got there first."""
        problems = []
        for job_id in dict.fromkeys(job_ids):
            history = await self.store.history(job_id)
            if not history:
                problems.append(f"no dead letter for job {job_id!r}")
            elif history[-1]["status"] == DeadStatus.DEAD:
                problems.append(str(await self.why_not(job_id, "move")))
            elif history[-1]["status_changed_by"] != self.actor:
                problems.append(f"job {job_id!r} is no longer dead ({history[-1]['status']})")
        return problems

    async def why_not(self, job_id: str, verb: str) -> Exception:
        """Why ``job_id`` could not be moved: JobNotFound, or JobStateConflict saying its state."""
        rows = await self.store.history(job_id)
        if not rows:
            return JobNotFound(f"no dead letter for job {job_id!r}")
        latest = rows[-1]
        if latest["status"] == DeadStatus.DEAD and not is_queue_name(latest["queue"]):
            return JobStateConflict(
                f"cannot {verb} job {job_id!r}: its queue {latest['queue']!r} cannot take jobs "
                "(see the x-lazarus-queue header in lazarus dead show)"
            )
        if latest["status"] == DeadStatus.DEAD:
            job = await self.store.get_job(job_id)
            if job is not None:
                return JobStateConflict(
                    f"cannot {verb} job {job_id!r}: its job is {job['state']} at generation "
                    f"{job['generation']} (see lazarus jobs show)"
                )
        return JobStateConflict(
            f"cannot {verb} job {job_id!r}: it is no longer dead "
            f"(generation {latest['generation']} is {latest['status']})"
        )
