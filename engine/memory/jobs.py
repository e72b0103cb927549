"""Job states, checkpoints, pauses and the workers' registry of the in-memory store: the
rules of ``report_transitions``, ``stop_job``, ``resume_job`` and the pause and registry
queries (``engine/pg/sql``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg

from engine.memory.tables import (
    ATTEMPT_COLUMNS,
    ATTEMPT_OUTCOMES,
    ERROR_FIELDS,
    JOB_COLUMNS,
    LISTED_JOB,
    REPORT_COLUMNS,
    STOPPED,
    Tables,
    as_jsonb,
    checked_int32,
    checked_text,
    copied,
    pick,
    utc_now,
)
from engine.message import bounded_error
from engine.pg.port import (
    KEY_HELD,
    Build,
    Enqueued,
    JobIdTaken,
    OutboxKind,
    Staged,
    UniqueJob,
)
from engine.states import PERSON_SEQ, JobState

if TYPE_CHECKING:
    from engine.pg.workers import WorkerInfo


class JobTables(Tables):
    """Queries on ``jobs``, ``queue_pauses``, ``type_pauses`` and ``workers``."""

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
                *ERROR_FIELDS,
            ):
                checked_text(new[name])
            for name in ("generation", "seq", "redeliveries", "attempt", "max_retries"):
                checked_int32(new[name])
            new["payload"], new["checkpoint"] = (
                as_jsonb(new["payload"]),
                as_jsonb(new["checkpoint"]),
            )
        applied: set[tuple[str, int]] = set()
        now = utc_now()
        for new in reports:
            old = self.jobs.get(new["job_id"])
            if old is None:
                self.jobs[new["job_id"]] = {name: new.get(name) for name in JOB_COLUMNS} | {
                    "updated_at": now
                }
            elif self._later(new, old):
                was = old["state"]
                self._apply(new, old, now)
                self._job_state_changed(old, was)
            else:
                continue
            applied.add((new["job_id"], new["seq"]))
            self._record_attempt(new, now)
        return applied

    def _record_attempt(self, new: dict[str, Any], now: datetime) -> None:
        """report_transitions' job_attempts insert: an applied failure with an error, once."""
        if new["state"] not in ATTEMPT_OUTCOMES or new["error_type"] is None:
            return
        key = (new["job_id"], new["generation"], new["attempt"], new["state"])
        if key in self.job_attempts:
            return
        error_type, message, traceback = bounded_error(
            new["error_type"], new["error_message"], new["traceback"]
        )
        self.job_attempts[key] = {
            "job_id": new["job_id"],
            "generation": new["generation"],
            "attempt": new["attempt"],
            "outcome": new["state"],
            "error_type": error_type,
            "error_message": message or "",
            "traceback": traceback or "",
            "worker": new["worker"],
            "at": now,
        }

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
            for name in ERROR_FIELDS
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

    async def enqueue_unique(self, job: UniqueJob) -> Enqueued:
        """insert_unique_job and its outbox row in one step, or the key's holder
        (key_holder); JobIdTaken if the id is taken outside the key."""
        self._up()
        for held in self.jobs.values():
            if held["unique_key"] == job.unique_key and held["state"] in KEY_HELD:
                return Enqueued(held["job_id"], False, JobState(held["state"]))
        if job.job_id in self.jobs:
            raise JobIdTaken(
                f"job id {job.job_id[:64]!r} is taken by a job that does not hold "
                f"unique key {job.unique_key[:64]!r}"
            )
        row = dict.fromkeys(JOB_COLUMNS) | {
            "job_id": checked_text(job.job_id),
            "generation": 0,
            "seq": 0,
            "redeliveries": 0,
            "job_type": checked_text(job.job_type),
            "queue": checked_text(job.queue),
            "state": JobState.PENDING.value,
            "attempt": 0,
            "max_retries": checked_int32(job.max_retries),
            "payload": as_jsonb(job.payload),
            "suspend_on_failure": job.suspend_on_failure,
            "created_at": job.created_at,
            "updated_at": utc_now(),
            "unique_key": checked_text(job.unique_key),
        }
        self.jobs[job.job_id] = row
        self._stage(Staged(OutboxKind.ENQUEUE, job.job_id, job.queue, job.body, run_at=job.run_at))
        return Enqueued(job.job_id, True, JobState.PENDING)

    async def save_checkpoint(self, job_id: str, generation: int, state: Any) -> bool:
        self._up()
        job = self.jobs.get(job_id)
        if job is None or job["generation"] != generation or job["state"] != JobState.RUNNING:
            return False
        job.update(checkpoint=as_jsonb(state), updated_at=utc_now())
        return True

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        self._up()
        job = self.jobs.get(job_id)
        return None if job is None else copied(job)

    async def attempts(self, job_id: str) -> list[dict[str, Any]]:
        self._up()
        rows = [a for key, a in self.job_attempts.items() if key[0] == job_id]
        rows.sort(key=lambda a: (a["generation"], a["attempt"], a["at"]))
        return [pick(a, ATTEMPT_COLUMNS) for a in rows]

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
        return [pick(j, LISTED_JOB) for j in rows[:limit]]

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
        was = job["state"]
        job.update(
            state=state,
            seq=PERSON_SEQ,
            cause=checked_text(cause),
            traceback=None,
            stopped_by=checked_text(actor),
            token=None,
            updated_at=utc_now(),
        )
        self._job_state_changed(job, was)
        return copied(job)

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
            "max_retries": checked_int32(retries) if retries is not None else job["max_retries"],
            "payload": as_jsonb(payload) if replace_payload else job["payload"],
            "checkpoint": job["checkpoint"] if keep_checkpoint else None,
            "cause": None,
            "stopped_by": checked_text(actor),
            "token": None,
            "updated_at": utc_now(),
        }
        body = bytes(build(copied(resumed)))
        job.update(resumed)
        self._job_state_changed(job, JobState.SUSPENDED.value)
        self._stage(Staged(OutboxKind.RESUME, job_id, job["queue"], body))
        return copied(job)

    async def stopped_among(self, job_ids: Sequence[str]) -> dict[str, int]:
        self._up()
        return {
            i: self.jobs[i]["generation"]
            for i in job_ids
            if i in self.jobs and self.jobs[i]["state"] in STOPPED
        }

    async def count_jobs_by_state(self) -> dict[str, int]:
        self._up()
        counts: dict[str, int] = {}
        for job in self.jobs.values():
            counts[job["state"]] = counts.get(job["state"], 0) + 1
        return counts

    async def finished_last_minute(self) -> dict[str, int]:
        self._up()
        since = utc_now() - timedelta(minutes=1)
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
            key: checked_text(name),
            "paused_at": utc_now(),
            "paused_by": checked_text(actor),
            "reason": checked_text(reason),
        }
        return True

    async def paused_queues(self) -> list[dict[str, Any]]:
        self._up()
        return [copied(self.queue_pauses[q]) for q in sorted(self.queue_pauses)]

    async def pause_queue(self, queue: str, actor: str, reason: str) -> bool:
        self._up()
        return self._pause(self.queue_pauses, "queue", queue, actor, reason)

    async def resume_queue(self, queue: str) -> bool:
        self._up()
        return self.queue_pauses.pop(queue, None) is not None

    async def paused_types(self) -> list[dict[str, Any]]:
        self._up()
        return [copied(self.type_pauses[t]) for t in sorted(self.type_pauses)]

    async def pause_type(self, job_type: str, actor: str, reason: str) -> bool:
        self._up()
        return self._pause(self.type_pauses, "job_type", job_type, actor, reason)

    async def resume_type(self, job_type: str) -> bool:
        self._up()
        return self.type_pauses.pop(job_type, None) is not None

    # -- workers' registry ----------------------------------------------------------------

    async def register_worker(self, info: WorkerInfo) -> None:
        self._up()
        now = utc_now()
        self.workers[info.worker_id] = {
            "worker_id": checked_text(info.worker_id),
            "host": checked_text(info.host),
            "pid": checked_int32(info.pid),
            "version": checked_text(info.version),
            "queues": [checked_text(q) for q in info.queues],
            "job_types": as_jsonb(info.job_types),
            "started_at": now,
            "last_seen": now,
            "stopped_at": None,
        }

    async def worker_seen(self, worker_id: str) -> None:
        self._up()
        if worker_id in self.workers:
            self.workers[worker_id].update(last_seen=utc_now(), stopped_at=None)

    async def worker_stopped(self, worker_id: str) -> None:
        self._up()
        if worker_id in self.workers:
            now = utc_now()
            self.workers[worker_id].update(last_seen=now, stopped_at=now)

    async def list_workers(
        self, seen_since: datetime, alive_since: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """Seen since ``seen_since``; alive (not stopped, seen since ``alive_since``) first,
        then the most recently seen."""
        self._up()
        rows = [
            copied(w) | {"alive": w["stopped_at"] is None and w["last_seen"] >= alive_since}
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
