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

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from engine.errors import ServiceUnavailable
from engine.filters import DeadFilter
from engine.memory.matching import matches
from engine.pg.port import AdminStore, Build, OutboxStore, WorkerStore
from engine.states import PERSON_SEQ, DeadStatus, JobState

if TYPE_CHECKING:
    from engine.pg.store import DeadRecord
    from engine.pg.workers import WorkerInfo

# The columns of the tracker's report rows (engine.worker.tracker.Transition.row), in order.
REPORT_COLUMNS = (
    "job_id", "generation", "seq", "redeliveries", "job_type", "queue", "state", "attempt",
    "max_retries", "payload", "suspend_on_failure", "error_type", "error_message", "traceback",
    "cause", "worker", "created_at", "started_at", "checkpoint", "token",
)  # fmt: skip
JOB_COLUMNS = (
    "job_id", "generation", "seq", "redeliveries", "job_type", "queue", "state", "attempt",
    "max_retries", "payload", "checkpoint", "suspend_on_failure", "error_type", "error_message",
    "traceback", "cause", "stopped_by", "worker", "created_at", "started_at", "updated_at",
    "token",
)  # fmt: skip
LISTED_DEAD = (
    "id", "job_id", "generation", "job_type", "queue", "attempts", "max_retries", "reason",
    "error_type", "error_message", "died_at", "status", "worker",
)  # fmt: skip
LISTED_JOB = (
    "job_id", "generation", "job_type", "queue", "state", "attempt", "max_retries", "cause",
    "error_type", "error_message", "updated_at",
)  # fmt: skip
STAGED = ("id", "job_id", "generation", "job_type", "queue", "payload", "max_retries",
          "enqueued_at")  # fmt: skip
_ERROR_FIELDS = ("error_type", "error_message", "traceback")
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")  # mark_requeue_pending's pattern
_INT32 = range(-(2**31), 2**31)
_STOPPED = (JobState.SUSPENDED.value, JobState.CANCELLED.value)


def _now() -> datetime:
    return datetime.now(UTC)


def _rejected(what: str) -> asyncpg.DataError:
    return asyncpg.DataError(f"PostgreSQL would refuse {what}")


def _text(value: Any) -> Any:
    """A text value as PostgreSQL stores it: a NUL is refused."""
    if isinstance(value, str) and "\x00" in value:
        raise _rejected(f"a NUL character in {value[:40]!r}")
    return value


def _int32(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT32:
        raise _rejected(f"{value} as an integer (out of range)")
    return value


def _json(value: Any) -> Any:
    """A JSON value as it comes back from a jsonb column (the pool's codec); None is NULL."""
    if value is None:
        return None
    text = orjson.dumps(value, default=str)
    if b"\\u0000" in text:
        raise _rejected("\\u0000 in a JSON value")
    return orjson.loads(text)


def _pick(row: dict[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    return {name: row[name] for name in columns}


class InMemoryStore:
    """WorkerStore, OutboxStore and AdminStore without PostgreSQL; see the module docstring.

    ``outage()`` makes every call fail as the PostgreSQL store does while it is down.
    """

    def __init__(self) -> None:
        self.dead_letters: dict[int, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.outbox: dict[int, dict[str, Any]] = {}
        self.audit_log: dict[int, dict[str, Any]] = {}
        self.queue_pauses: dict[str, dict[str, Any]] = {}
        self.type_pauses: dict[str, dict[str, Any]] = {}
        self.workers: dict[str, dict[str, Any]] = {}
        self._claimed: set[int] = set()  # outbox ids an open claim holds (FOR UPDATE)
        self._ids = {"dead": 0, "outbox": 0, "audit": 0}
        self._down = 0

    def _next(self, table: str) -> int:
        self._ids[table] += 1
        return self._ids[table]

    # -- faults and lifecycle -----------------------------------------------------------

    @contextmanager
    def outage(self) -> Iterator[None]:
        """While open, every call raises ServiceUnavailable (one of DB_UNAVAILABLE)."""
        self._down += 1
        try:
            yield
        finally:
            self._down -= 1

    def _up(self) -> None:
        if self._down:
            raise ServiceUnavailable("PostgreSQL: connection refused (in-memory outage)")

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
                    "job_id": _text(r.job_id),
                    "generation": _int32(r.generation),
                    "job_type": _text(r.job_type),
                    "queue": _text(r.queue),
                    "payload": _json(r.payload),
                    "body": bytes(r.body),
                    "headers": _json(r.headers),
                    "attempts": _int32(r.attempts),
                    "max_retries": _int32(r.max_retries),
                    "reason": _text(r.reason),
                    "error_type": _text(r.error_type),
                    "error_message": _text(r.error_message),
                    "traceback": _text(r.traceback),
                    "checkpoint": _json(r.checkpoint),
                    "enqueued_at": r.enqueued_at,
                    "died_at": r.died_at,
                    "recorded_at": _now(),
                    "worker": _text(r.worker),
                    "status": DeadStatus.DEAD.value,
                    "status_changed_at": None,
                    "status_changed_by": None,
                }
            )
        for row in rows:  # every value checked first: a refused batch adds nothing
            row_id = self._next("dead")
            self.dead_letters[row_id] = {"id": row_id, **row}
        return len(rows)

    async def stored_death(self, job_id: str, generation: int) -> dict[str, Any] | None:
        self._up()
        for row in self.dead_letters.values():
            if row["job_id"] == job_id and row["generation"] == generation:
                return _pick(row, ("body", "headers", "traceback"))
        return None

    async def history(self, job_id: str) -> list[dict[str, Any]]:
        self._up()
        rows = [dict(r) for r in self.dead_letters.values() if r["job_id"] == job_id]
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
        return [_pick(r, LISTED_DEAD) for r in rows[:limit]]

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
        if not _QUEUE_NAME.fullmatch(row["queue"]):
            return False
        job = self.jobs.get(row["job_id"])
        return job is None or not (
            job["generation"] > row["generation"]
            or (job["generation"] == row["generation"] and job["state"] in _STOPPED)
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
            view = _pick(row, STAGED) | {
                "checkpoint": saved if saved is not None else row["checkpoint"]
            }
            staged.append((row, bytes(build(view))))
        now = _now()
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
            self._stage(row["id"], row["job_id"], row["queue"], body)
        return len(staged)

    def _stage(self, dead_letter_id: int | None, job_id: str, queue: str, body: bytes) -> None:
        outbox_id = self._next("outbox")
        self.outbox[outbox_id] = {
            "id": outbox_id,
            "dead_letter_id": dead_letter_id,
            "job_id": job_id,
            "queue": queue,
            "body": body,
            "created_at": _now(),
        }

    @asynccontextmanager
    async def claim_outbox(self, limit: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Up to ``limit`` rows by id that no other open claim holds (SKIP LOCKED); sent on a
        normal exit (their dead letters become ``requeued``), released if the block raises."""
        self._up()
        ids = [i for i in sorted(self.outbox) if i not in self._claimed][:limit]
        self._claimed.update(ids)
        try:
            yield [
                _pick(self.outbox[i], ("id", "dead_letter_id", "job_id", "queue", "body"))
                for i in ids
            ]
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
        now, count = _now(), 0
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
        now = _now()
        self.audit_log[entry] = {
            "id": entry,
            "at": now,
            "actor": _text(actor),
            "action": _text(action),
            "selector": _json(selector),
            "count": _int32(count),
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
                count=_int32(count), state=state, finished_at=None if state == "running" else _now()
            )

    async def audit_recent(
        self, limit: int = 20, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        self._up()
        ids = [
            i for i in sorted(self.audit_log, reverse=True) if before_id is None or i < before_id
        ]
        return [dict(self.audit_log[i]) for i in ids[:limit]]

    # -- jobs -----------------------------------------------------------------------------

    async def report(self, rows: Sequence[tuple[Any, ...]]) -> set[tuple[str, int]]:
        """Apply each report whose (generation, seq, redeliveries) is later than the row's, or
        which carries the token the row holds (sent again after a lost reply)."""
        self._up()
        reports = [dict(zip(REPORT_COLUMNS, row, strict=True)) for row in rows]
        seen: set[str] = set()
        for new in reports:
            if new["job_id"] in seen:
                raise asyncpg.CardinalityViolationError(
                    "ON CONFLICT DO UPDATE command cannot affect row a second time"
                )
            seen.add(new["job_id"])
            for name in (
                "job_id",
                "job_type",
                "queue",
                "state",
                "cause",
                "worker",
                "token",
                *_ERROR_FIELDS,
            ):
                _text(new[name])
            for name in ("generation", "seq", "redeliveries", "attempt", "max_retries"):
                _int32(new[name])
            new["payload"], new["checkpoint"] = _json(new["payload"]), _json(new["checkpoint"])
        applied: set[tuple[str, int]] = set()
        now = _now()
        for new in reports:
            old = self.jobs.get(new["job_id"])
            if old is None:
                self.jobs[new["job_id"]] = {name: new.get(name) for name in JOB_COLUMNS} | {
                    "updated_at": now
                }
            elif self._later(new, old):
                self._apply(new, old, now)
            else:
                continue
            applied.add((new["job_id"], new["seq"]))
        return applied

    @staticmethod
    def _later(new: dict[str, Any], old: dict[str, Any]) -> bool:
        order = ("generation", "seq", "redeliveries")
        if tuple(new[k] for k in order) > tuple(old[k] for k in order):
            return True
        return old["token"] is not None and old["token"] == new["token"]

    @staticmethod
    def _apply(new: dict[str, Any], old: dict[str, Any], now: datetime) -> None:
        """report_transitions' SET list: job type, queue, creation time and stopped_by stay."""
        clean = new["state"] == JobState.SUCCEEDED or new["generation"] != old["generation"]
        errors = {
            name: new[name] if clean or new[name] is not None else old[name]
            for name in _ERROR_FIELDS
        }
        running = new["state"] == JobState.RUNNING
        old.update(
            {
                name: new[name]
                for name in (
                    "generation",
                    "seq",
                    "redeliveries",
                    "state",
                    "attempt",
                    "max_retries",
                    "suspend_on_failure",
                    "cause",
                    "worker",
                    "token",
                )
            },
            payload=new["payload"] if new["payload"] is not None else old["payload"],
            started_at=new["started_at"] if new["started_at"] is not None else old["started_at"],
            checkpoint=new["checkpoint"] if running else old["checkpoint"],
            updated_at=now,
            **errors,
        )

    async def save_checkpoint(self, job_id: str, generation: int, state: Any) -> bool:
        self._up()
        job = self.jobs.get(job_id)
        if job is None or job["generation"] != generation or job["state"] != JobState.RUNNING:
            return False
        job.update(checkpoint=_json(state), updated_at=_now())
        return True

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        self._up()
        job = self.jobs.get(job_id)
        return None if job is None else dict(job)

    async def list_jobs(
        self,
        *,
        state: str | None = None,
        job_type: str | None = None,
        queue: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        self._up()
        wanted = {"state": state, "job_type": job_type, "queue": queue}
        rows = [
            j
            for j in self.jobs.values()
            if all(value is None or j[name] == value for name, value in wanted.items())
        ]
        rows.sort(key=lambda j: j["updated_at"], reverse=True)
        return [_pick(j, LISTED_JOB) for j in rows[:limit]]

    async def stop_job(
        self,
        job_id: str,
        state: str,
        cause: str,
        actor: str,
        from_states: Sequence[str],
        generation: int,
    ) -> dict[str, Any] | None:
        """Compare-and-set on the generation and states found, with PERSON_SEQ."""
        self._up()
        job = self.jobs.get(job_id)
        if job is None or job["state"] not in from_states or job["generation"] != generation:
            return None
        job.update(
            state=state,
            seq=PERSON_SEQ,
            cause=_text(cause),
            traceback=None,
            stopped_by=_text(actor),
            token=None,
            updated_at=_now(),
        )
        return dict(job)

    async def resume_job(
        self,
        job_id: str,
        *,
        retries: int | None,
        payload: Any,
        replace_payload: bool,
        keep_checkpoint: bool,
        actor: str,
        build: Build,
        generation: int,
    ) -> dict[str, Any] | None:
        """Compare-and-set ``suspended`` in ``generation`` -> ``pending`` in the next one, and
        its outbox row; nothing changes if ``build`` raises."""
        self._up()
        job = self.jobs.get(job_id)
        if job is None or job["state"] != JobState.SUSPENDED or job["generation"] != generation:
            return None
        resumed = job | {
            "state": JobState.PENDING.value,
            "generation": job["generation"] + 1,
            "seq": 0,
            "redeliveries": 0,
            "attempt": 0,
            "max_retries": _int32(retries) if retries is not None else job["max_retries"],
            "payload": _json(payload) if replace_payload else job["payload"],
            "checkpoint": job["checkpoint"] if keep_checkpoint else None,
            "cause": None,
            "stopped_by": _text(actor),
            "token": None,
            "updated_at": _now(),
        }
        body = bytes(build(dict(resumed)))
        job.update(resumed)
        self._stage(None, job_id, job["queue"], body)
        return dict(job)

    async def stopped_among(self, job_ids: Sequence[str]) -> dict[str, int]:
        self._up()
        return {
            i: self.jobs[i]["generation"]
            for i in job_ids
            if i in self.jobs and self.jobs[i]["state"] in _STOPPED
        }

    async def count_jobs_by_state(self) -> dict[str, int]:
        self._up()
        counts: dict[str, int] = {}
        for job in self.jobs.values():
            counts[job["state"]] = counts.get(job["state"], 0) + 1
        return counts

    async def finished_last_minute(self) -> dict[str, int]:
        self._up()
        since = _now() - timedelta(minutes=1)
        counts: dict[str, int] = {}
        for job in self.jobs.values():
            if job["state"] in (JobState.SUCCEEDED, JobState.DEAD) and job["updated_at"] >= since:
                counts[job["queue"]] = counts.get(job["queue"], 0) + 1
        return counts

    async def known_types(self) -> list[str]:
        self._up()
        found = {j["job_type"] for j in self.jobs.values()}
        found |= {d["job_type"] for d in self.dead_letters.values() if d["job_type"] != ""}
        return sorted(found)

    async def known_queues(self) -> list[str]:
        self._up()
        found = {j["queue"] for j in self.jobs.values()}
        return sorted(found | {d["queue"] for d in self.dead_letters.values()})

    # -- pauses ---------------------------------------------------------------------------

    def _pause(
        self, table: dict[str, dict[str, Any]], key: str, name: str, actor: str, reason: str
    ) -> bool:
        if name in table:
            return False
        table[name] = {
            key: _text(name),
            "paused_at": _now(),
            "paused_by": _text(actor),
            "reason": _text(reason),
        }
        return True

    async def paused_queues(self) -> list[dict[str, Any]]:
        self._up()
        return [dict(self.queue_pauses[q]) for q in sorted(self.queue_pauses)]

    async def pause_queue(self, queue: str, actor: str, reason: str) -> bool:
        self._up()
        return self._pause(self.queue_pauses, "queue", queue, actor, reason)

    async def resume_queue(self, queue: str) -> bool:
        self._up()
        return self.queue_pauses.pop(queue, None) is not None

    async def paused_types(self) -> list[dict[str, Any]]:
        self._up()
        return [dict(self.type_pauses[t]) for t in sorted(self.type_pauses)]

    async def pause_type(self, job_type: str, actor: str, reason: str) -> bool:
        self._up()
        return self._pause(self.type_pauses, "job_type", job_type, actor, reason)

    async def resume_type(self, job_type: str) -> bool:
        self._up()
        return self.type_pauses.pop(job_type, None) is not None

    # -- workers' registry ----------------------------------------------------------------

    async def register_worker(self, info: WorkerInfo) -> None:
        self._up()
        now = _now()
        self.workers[info.worker_id] = {
            "worker_id": _text(info.worker_id),
            "host": _text(info.host),
            "pid": _int32(info.pid),
            "version": _text(info.version),
            "queues": [_text(q) for q in info.queues],
            "job_types": _json(info.job_types),
            "started_at": now,
            "last_seen": now,
            "stopped_at": None,
        }

    async def worker_seen(self, worker_id: str) -> None:
        self._up()
        if worker_id in self.workers:
            self.workers[worker_id].update(last_seen=_now(), stopped_at=None)

    async def worker_stopped(self, worker_id: str) -> None:
        self._up()
        if worker_id in self.workers:
            now = _now()
            self.workers[worker_id].update(last_seen=now, stopped_at=now)

    async def list_workers(
        self, seen_since: datetime, alive_since: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """Seen since ``seen_since``; alive (not stopped, seen since ``alive_since``) first,
        then the most recently seen."""
        self._up()
        rows = [
            w | {"alive": w["stopped_at"] is None and w["last_seen"] >= alive_since}
            for w in self.workers.values()
            if w["last_seen"] >= seen_since
        ]
        rows.sort(key=lambda w: (w["alive"], w["last_seen"]), reverse=True)
        return rows[:limit]

    async def known_routes(self, seen_since: datetime) -> list[dict[str, Any]]:
        """Each job type's queue as declared by the running workers first, then the most
        recently seen."""
        self._up()
        seen = [w for w in self.workers.values() if w["last_seen"] >= seen_since]
        seen.sort(key=lambda w: (w["stopped_at"] is None, w["last_seen"]), reverse=True)
        routes: dict[str, str] = {}
        for worker in seen:
            for job_type, queue in worker["job_types"].items():
                routes.setdefault(job_type, queue)
        return [{"job_type": t, "queue": routes[t]} for t in sorted(routes)]


if TYPE_CHECKING:

    def _implements(store: InMemoryStore) -> tuple[WorkerStore, OutboxStore, AdminStore]:
        """mypy checks here that the double answers every port it stands in for."""
        return store, store, store
