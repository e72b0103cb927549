"""A store in process memory with the rules of ``engine/pg/sql/queries.sql``.

Tables are dicts of rows (dicts, which satisfy :class:`engine.pg.rows.Row`), ids come from
counters. Every change happens between two awaits, so a compare-and-set or a claim is one
atomic step, as a statement is in PostgreSQL: of many concurrent requeues of one dead
letter exactly one wins. JSON columns go through the same codec as the PostgreSQL pool
(orjson, unknown types as ``str``), and values PostgreSQL refuses (a NUL in text or JSON,
an integer outside int32) are refused here too, so the engine's fallbacks for rejected
rows run against this store as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.filters import DeadFilter
from engine.memory.jobs import JobTables
from engine.memory.matching import matches
from engine.memory.tables import (
    LISTED_DEAD,
    OUTBOX_CLAIMED,
    QUEUE_NAME,
    STAGED,
    STOPPED,
    as_jsonb,
    checked_int32,
    checked_text,
    copied,
    pick,
    utc_now,
)
from engine.memory.workflows import WorkflowTables
from engine.pg.port import (
    AdminStore,
    Build,
    OutboxKind,
    OutboxStore,
    Staged,
    UniqueJobStore,
    WorkerStore,
    WorkflowStore,
)
from engine.states import DeadStatus, JobState

if TYPE_CHECKING:
    from engine.pg.store import DeadRecord


class InMemoryStore(WorkflowTables, JobTables):
    """WorkerStore, OutboxStore and AdminStore without PostgreSQL; see the module docstring.

    ``outage()`` makes every call fail as the PostgreSQL store does while it is down.
    """

    async def connect(self, *, require_schema: bool = True) -> None:
        self._up()

    async def close(self) -> None:
        """Nothing to release; the tables stay (a store is one database)."""

    async def recover(self, exc: BaseException) -> None:
        """No pool to repair."""

    # -- dead letters ---------------------------------------------------------------------

    async def insert_dead(self, records: Sequence[DeadRecord]) -> int:
        """The batch in order; a (job id, generation) already stored, or earlier in the
        batch, is skipped (ON CONFLICT DO NOTHING)."""
        self._up()
        taken = {(r["job_id"], r["generation"]) for r in self.dead_letters.values()}
        rows = []
        for r in records:
            if (r.job_id, r.generation) in taken:
                continue
            taken.add((r.job_id, r.generation))
            rows.append(
                {
                    "job_id": checked_text(r.job_id),
                    "generation": checked_int32(r.generation),
                    "job_type": checked_text(r.job_type),
                    "queue": checked_text(r.queue),
                    "payload": as_jsonb(r.payload),
                    "body": bytes(r.body),
                    "headers": as_jsonb(r.headers),
                    "attempts": checked_int32(r.attempts),
                    "max_retries": checked_int32(r.max_retries),
                    "reason": checked_text(r.reason),
                    "error_type": checked_text(r.error_type),
                    "error_message": checked_text(r.error_message),
                    "traceback": checked_text(r.traceback),
                    "checkpoint": as_jsonb(r.checkpoint),
                    "enqueued_at": r.enqueued_at,
                    "died_at": r.died_at,
                    "recorded_at": utc_now(),
                    "worker": checked_text(r.worker),
                    "workflow_id": checked_text(r.workflow_id),
                    "status": DeadStatus.DEAD.value,
                    "status_changed_at": None,
                    "status_changed_by": None,
                }
            )
        for row in rows:  # every value checked first: a refused batch adds nothing
            row_id = self._next("dead")
            self.dead_letters[row_id] = {"id": row_id, **row}
            self._dead_letter_stored(self.dead_letters[row_id])
        return len(rows)

    async def stored_death(self, job_id: str, generation: int) -> dict[str, Any] | None:
        self._up()
        for row in self.dead_letters.values():
            if row["job_id"] == job_id and row["generation"] == generation:
                return pick(row, ("body", "headers", "traceback"))
        return None

    async def history(self, job_id: str) -> list[dict[str, Any]]:
        self._up()
        rows = [copied(r) for r in self.dead_letters.values() if r["job_id"] == job_id]
        return sorted(rows, key=lambda r: r["generation"])

    def _matching(self, selector: DeadFilter) -> list[dict[str, Any]]:
        return [r for _, r in sorted(self.dead_letters.items()) if matches(selector, r)]

    async def list_dead(
        self, selector: DeadFilter, *, limit: int = 50, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        self._up()
        rows = [r for r in reversed(self._matching(selector))]
        if before_id is not None:
            rows = [r for r in rows if r["id"] < before_id]
        return [pick(r, LISTED_DEAD) for r in rows[:limit]]

    async def matching_ids(
        self, selector: DeadFilter, *, after_id: int, upto_id: int, limit: int
    ) -> list[int]:
        self._up()
        ids = [r["id"] for r in self._matching(selector) if after_id < r["id"] <= upto_id]
        return ids[:limit]

    async def last_dead_id(self) -> int:
        self._up()
        return max(self.dead_letters, default=0)

    async def count_dead(self, selector: DeadFilter, cap: int | None = None) -> int:
        self._up()
        n = len(self._matching(selector))
        return n if cap is None else min(n, cap + 1)

    def _requeueable(self, row: dict[str, Any]) -> bool:
        """mark_requeue_pending's condition: dead, decodable, a routable queue, and its job
        neither stopped by a person in this generation nor on a later one."""
        if row["status"] != DeadStatus.DEAD or row["job_type"] == "":
            return False
        if not QUEUE_NAME.fullmatch(row["queue"]):
            return False
        job = self.jobs.get(row["job_id"])
        return job is None or not (
            job["generation"] > row["generation"]
            or (job["generation"] == row["generation"] and job["state"] in STOPPED)
        )

    async def stage_requeue(self, row_ids: Sequence[int], actor: str, build: Build) -> int:
        """Compare-and-set ``dead`` -> ``requeue_pending``, the job's next generation and the
        outbox rows, in one step; nothing changes if ``build`` raises (a rollback)."""
        self._up()
        won = [
            self.dead_letters[i]
            for i in sorted(set(row_ids))
            if i in self.dead_letters and self._requeueable(self.dead_letters[i])
        ]
        staged = []
        for row in won:
            job = self.jobs.get(row["job_id"])
            saved = job["checkpoint"] if job and job["generation"] == row["generation"] else None
            view = pick(row, STAGED) | {
                "checkpoint": saved if saved is not None else row["checkpoint"]
            }
            staged.append((row, bytes(build(view))))
        now = utc_now()
        for row, body in staged:
            row.update(
                status=DeadStatus.REQUEUE_PENDING.value,
                status_changed_at=now,
                status_changed_by=actor,
            )
            job = self.jobs.get(row["job_id"])
            if job is not None and job["generation"] == row["generation"]:
                job.update(
                    state=JobState.PENDING.value,
                    generation=row["generation"] + 1,
                    seq=0,
                    redeliveries=0,
                    attempt=0,
                    cause=None,
                    token=None,
                    updated_at=now,
                )
            self._stage(Staged(OutboxKind.REQUEUE, row["job_id"], row["queue"], body, row["id"]))
        return len(staged)

    @asynccontextmanager
    async def claim_outbox(self, limit: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Up to ``limit`` rows by id that no other open claim holds (SKIP LOCKED); sent on a
        normal exit (their dead letters become ``requeued``), released if the block raises."""
        self._up()
        ids = [i for i in sorted(self.outbox) if i not in self._claimed][:limit]
        self._claimed.update(ids)
        try:
            yield [pick(self.outbox[i], OUTBOX_CLAIMED) for i in ids]
            self._up()  # the commit needs the server too
            for i in ids:
                sent = self.outbox.pop(i, None)
                dead = self.dead_letters.get(sent["dead_letter_id"]) if sent else None
                if dead is not None and dead["status"] == DeadStatus.REQUEUE_PENDING:
                    dead["status"] = DeadStatus.REQUEUED.value
        finally:
            self._claimed.difference_update(ids)

    async def reanimation_candidates(
        self,
        job_type: str,
        error_types: Sequence[str],
        died_before: datetime,
        actor: str,
        max_times: int,
        limit: int,
    ) -> list[int]:
        """Dead rows of ``job_type``, of an exactly listed error type (none: any), dead
        before ``died_before``, moved back by ``actor`` fewer than ``max_times`` times."""
        self._up()
        moved = (DeadStatus.REQUEUE_PENDING, DeadStatus.REQUEUED)

        def times(job_id: str) -> int:
            return sum(
                1
                for h in self.dead_letters.values()
                if h["job_id"] == job_id
                and h["status_changed_by"] == actor
                and h["status"] in moved
            )

        found = [
            row_id
            for row_id, d in sorted(self.dead_letters.items())
            if d["status"] == DeadStatus.DEAD
            and d["job_type"] == job_type
            and (not error_types or d["error_type"] in error_types)
            and d["died_at"] < died_before
            and times(d["job_id"]) < max_times
        ]
        return found[:limit]

    async def mark_deleted(self, row_ids: Sequence[int], actor: str) -> int:
        self._up()
        now, count = utc_now(), 0
        for i in set(row_ids):
            row = self.dead_letters.get(i)
            if row is not None and row["status"] == DeadStatus.DEAD:
                row.update(
                    status=DeadStatus.DELETED.value, status_changed_at=now, status_changed_by=actor
                )
                count += 1
        return count

    async def purge(self, older_than: datetime) -> int:
        """Rows that died before ``older_than``, but a requeue in progress; their outbox rows
        go with them (ON DELETE CASCADE)."""
        self._up()
        gone = {
            i
            for i, r in self.dead_letters.items()
            if r["died_at"] < older_than and r["status"] != DeadStatus.REQUEUE_PENDING
        }
        for i in gone:
            del self.dead_letters[i]
        for i in [i for i, o in self.outbox.items() if o["dead_letter_id"] in gone]:
            del self.outbox[i]
        return len(gone)

    # -- audit ----------------------------------------------------------------------------

    def _audit_row(
        self, actor: str, action: str, selector: dict[str, Any], count: int, state: str
    ) -> int:
        entry = self._next("audit")
        now = utc_now()
        self.audit_log[entry] = {
            "id": entry,
            "at": now,
            "actor": checked_text(actor),
            "action": checked_text(action),
            "selector": as_jsonb(selector),
            "count": checked_int32(count),
            "state": state,
            "finished_at": now if state != "running" else None,
        }
        return entry

    async def audit(self, actor: str, action: str, selector: dict[str, Any], count: int) -> None:
        self._up()
        self._audit_row(actor, action, selector, count, "done")

    async def audit_begin(self, actor: str, action: str, selector: dict[str, Any]) -> int:
        self._up()
        return self._audit_row(actor, action, selector, 0, "running")

    async def audit_progress(self, entry: int, count: int, state: str = "running") -> None:
        self._up()
        row = self.audit_log.get(entry)
        if row is not None:
            row.update(
                count=checked_int32(count),
                state=state,
                finished_at=None if state == "running" else utc_now(),
            )

    async def audit_recent(
        self, limit: int = 20, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        self._up()
        ids = [
            i for i in sorted(self.audit_log, reverse=True) if before_id is None or i < before_id
        ]
        return [copied(self.audit_log[i]) for i in ids[:limit]]


if TYPE_CHECKING:

    def _implements(
        store: InMemoryStore,
    ) -> tuple[WorkerStore, OutboxStore, AdminStore, UniqueJobStore, WorkflowStore]:
        """mypy checks here that the double answers every port it stands in for."""
        return store, store, store, store, store
