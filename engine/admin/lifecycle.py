"""People's control over jobs, queues and job types: suspend, resume, cancel, pause, and
what they see.

Every change reads the job, then writes with a compare-and-set on the generation and
state it found: of two people (or a person and a failing worker) acting on one job at
once, exactly one wins, and the other is told the job is no longer in the state they
expected, even if the winner left it in a state their operation could also act on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from engine.admin.rows import Attempt, Job, JobCause, JobSummary, QueueInfo, TypeInfo
from engine.amqp.parking import parked_count, unpark
from engine.amqp.topology import work_queue
from engine.deadletters.generations import resumed_message
from engine.errors import JobNotFound, JobStateConflict
from engine.message import check_queue_name, check_type_name, now_utc
from engine.outbox.relay import drain
from engine.pg.port import AdminStore, needs_postgres
from engine.pg.rows import Row
from engine.states import PERSON_SEQ, JobState, RequeueMode

if TYPE_CHECKING:
    from engine.admin.facade import Admin

log = logging.getLogger("lazarus.lifecycle")

REQUESTED_BY_USER = "Requested by user"
ACTIVE = (JobState.PENDING, JobState.RUNNING, JobState.RETRYING)


def person_cause(reason: str | None) -> str:
    """The cause recorded for a person's stop: 'Requested by user', then their reason if any."""
    reason = (reason or "").strip()
    if not reason or reason == REQUESTED_BY_USER:
        return REQUESTED_BY_USER
    return f"{REQUESTED_BY_USER}: {reason}"


def pause_fields(pause: Row | None) -> dict[str, Any]:
    """Whether a queue or job type is paused, by whom, since when and why."""
    return {
        "paused": pause is not None,
        "paused_by": pause["paused_by"] if pause else None,
        "paused_at": pause["paused_at"] if pause else None,
        "reason": pause["reason"] if pause else None,
    }


def usable(names: Iterable[str], check: Callable[[str], str]) -> list[str]:
    """The names ``check`` accepts, sorted. Rows written before names were checked, or a
    forged dead letter, may hold one no queue can have: it is left out of a listing rather
    than failing it (and the dashboard, and the API) for everyone."""
    kept = []
    for name in names:
        try:
            kept.append(check(name))
        except ValueError:
            log.debug("not listed: %r is no valid name", name)
    return sorted(kept)


async def stage_resume(
    store: AdminStore,
    job_id: str,
    generation: int,
    mode: RequeueMode,
    retries: int | None,
    actor: str,
    *,
    payload: Any = None,
    replace_payload: bool = False,
) -> Row | None:
    """The compare-and-set of a resume (suspended in ``generation`` -> pending in the next)
    with its message staged in the outbox; None if the job moved on meanwhile."""
    return await store.resume_job(
        job_id,
        retries=retries,
        payload=payload,
        replace_payload=replace_payload,
        keep_checkpoint=mode is RequeueMode.RECOVER,
        actor=actor,
        build=resumed_message,
        generation=generation,
    )


class Lifecycle:
    """Job and queue control over an open :class:`Admin` (its store, broker and actor)."""

    def __init__(self, admin: Admin[Any]) -> None:
        self.admin = admin
        self.store: AdminStore = admin.store

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        job_type: str | None = None,
        queue: str | None = None,
        limit: int = 50,
    ) -> list[JobSummary]:
        """Matching jobs, most recently changed first."""
        rows = await self.store.list_jobs(
            state=state.value if state else None, job_type=job_type, queue=queue, limit=limit
        )
        return [JobSummary.from_row(r) for r in rows]

    async def show(self, job_id: str) -> Job:
        row = await self.store.get_job(job_id)
        if row is None:
            raise JobNotFound(f"no job {job_id!r} (it never ran on a tracking worker)")
        return Job.from_row(row)

    async def attempts(self, job_id: str) -> list[Attempt]:
        """Every failed attempt of the job recorded, in (generation, attempt) order; none for
        a job never tracked, or pruned."""
        return [Attempt.from_row(r) for r in await self.store.attempts(job_id)]

    async def activity(self, minutes: int = 15) -> list[dict[str, int]]:
        """Jobs per minute over the last ``minutes``, oldest first: succeeded and retrying (by
        each job's latest state) and dead (every death)."""
        start = now_utc().replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
        buckets = [{"succeeded": 0, "retried": 0, "dead": 0} for _ in range(minutes)]
        names = {"succeeded": "succeeded", "retrying": "retried", "dead": "dead"}
        for row in await needs_postgres(self.store, "job activity").activity(start):
            index = int((row["minute"] - start).total_seconds() // 60)
            if 0 <= index < minutes:
                buckets[index][names[row["series"]]] += row["n"]
        return buckets

    async def counts(self, cap: int | None = None) -> dict[str, int]:
        """Jobs per state; with ``cap``, each counted up to ``cap + 1`` only, at a cost that
        does not grow with history (the dashboard's refresh)."""
        if cap is None:
            return await self.store.count_jobs_by_state()
        store = needs_postgres(self.store, "capped job counts")
        return await store.count_jobs_capped([s.value for s in JobState], cap)

    async def suspend(
        self, job_id: str, reason: str | None = None, *, generation: int | None = None
    ) -> Job:
        """Stop a pending, running or retrying job, keeping its payload and checkpoint.

        The cause recorded is 'Requested by user', or 'Requested by user: <reason>'.
        A running job is cancelled at its next await within the workers' poll interval.
        ``generation``, when given, must still be the job's: an operation on what a person
        saw fails if someone else moved the job on meanwhile. Without it, the operation acts
        on the generation and state it finds when it begins.
        """
        return await self._stop(job_id, JobState.SUSPENDED, reason, ACTIVE, generation)

    async def cancel(
        self, job_id: str, reason: str | None = None, *, generation: int | None = None
    ) -> Job:
        """Stop a job for good: it will not run again."""
        return await self._stop(
            job_id, JobState.CANCELLED, reason, (*ACTIVE, JobState.SUSPENDED), generation
        )

    async def cause(self, job_id: str) -> JobCause:
        """Why a suspended job stopped: a person (who, and their reason), or the failure with
        its exception and traceback. A person's stop shows no error, even if an earlier
        attempt of the job left one on its row."""
        job = await self.show(job_id)
        if job.state != JobState.SUSPENDED:
            raise JobStateConflict(f"job {job_id!r} is not suspended (it is {job.state})")
        by_person = job.seq >= PERSON_SEQ
        return JobCause(
            job_id=job_id,
            cause=job.cause,
            error_type=None if by_person else job.error_type,
            traceback=None if by_person else job.traceback,
            stopped_by=job.stopped_by if by_person else None,
            since=job.updated_at,
        )

    async def resume(
        self,
        job_id: str,
        *,
        mode: RequeueMode = RequeueMode.RECOVER,
        retries: int | None = None,
        payload: Any = None,
        replace_payload: bool = False,
        generation: int | None = None,
    ) -> Job:
        """Send a suspended job back to its queue as its next generation.

        Like a stop, it acts on the generation it finds suspended when it begins.
        """
        if retries is not None and retries < 0:
            raise ValueError(f"retries must not be negative, got {retries}")
        found = await self._found(job_id, (JobState.SUSPENDED,), generation)
        row = await stage_resume(
            self.store,
            job_id,
            found["generation"],
            mode,
            retries,
            self.admin.actor,
            payload=payload,
            replace_payload=replace_payload,
        )
        if row is None:
            raise await self._conflict(job_id, f"suspended in generation {found['generation']}")
        await drain(self.store, self.admin.broker)
        await self.store.audit(self.admin.actor, "resume", {"job_id": job_id, "mode": mode}, 1)
        return Job.from_row(row)

    async def pause_queue(self, queue: str, reason: str = REQUESTED_BY_USER) -> bool:
        """Stop every worker taking jobs from ``queue``; False if it was already paused."""
        paused = await self.store.pause_queue(check_queue_name(queue), self.admin.actor, reason)
        await self.store.audit(self.admin.actor, "pause", {"queue": queue}, int(paused))
        return paused

    async def resume_queue(self, queue: str) -> bool:
        """Let workers take jobs from ``queue`` again; False if it was not paused."""
        resumed = await self.store.resume_queue(check_queue_name(queue))
        await self.store.audit(self.admin.actor, "unpause", {"queue": queue}, int(resumed))
        return resumed

    async def pause_type(self, job_type: str, reason: str = REQUESTED_BY_USER) -> bool:
        """Stop every worker running jobs of ``job_type``: they park them until it is resumed.

        False if it was already paused. Jobs already running finish.
        """
        paused = await self.store.pause_type(check_type_name(job_type), self.admin.actor, reason)
        await self.store.audit(self.admin.actor, "pause", {"job_type": job_type}, int(paused))
        return paused

    async def resume_type(self, job_type: str) -> tuple[bool, int]:
        """Let workers run ``job_type`` again and move its parked jobs back to their queues.

        Returns (whether it was paused, how many parked jobs moved). Parked jobs left by a
        resume that failed half way are moved even when the type is no longer paused.
        """
        resumed = await self.store.resume_type(check_type_name(job_type))
        moved = await unpark(self.admin.broker, job_type)
        await self.store.audit(
            self.admin.actor, "unpause", {"job_type": job_type, "moved": moved}, int(resumed)
        )
        return resumed, moved

    async def list_types(
        self, names: list[str] | None = None, *, every_parked_queue: bool = True
    ) -> list[TypeInfo]:
        """Pause and parked jobs of the named job types (default: every type seen or paused).

        Without ``every_parked_queue`` only paused types are asked about their parked jobs
        (``parked`` is None for the others): one broker round trip per paused type, not
        per type. Jobs left parked by a resume that failed half way show in the full form.

        A named type that is no valid name raises ValueError naming it.
        """
        pauses = {r["job_type"]: r for r in await self.store.paused_types()}
        if names:
            known = [check_type_name(name) for name in names]
        else:
            known = usable({*pauses, *await self.store.known_types()}, check_type_name)
        out = []
        for name in known:
            pause = pauses.get(name)
            # A passive declare per type, on a channel of its own (one that fails closes
            # it): the dashboard's refresh asks only about paused types, where jobs wait.
            probe = every_parked_queue or pause is not None
            parked = await parked_count(self.admin.broker, name) if probe else None
            out.append(TypeInfo(job_type=name, parked=parked, **pause_fields(pause)))
        return out

    async def list_queues(self, names: list[str] | None = None) -> list[QueueInfo]:
        """Depth, consumers, rate (jobs finished in the last minute) and pause of the named
        queues (default: every queue seen).

        A named queue that is no valid name raises ValueError naming it.
        """
        pauses = {r["queue"]: r for r in await self.store.paused_queues()}
        rates = await self.store.finished_last_minute()
        if names:
            known = [check_queue_name(name) for name in names]
        else:
            seen = {"default", *pauses, *await self.store.known_queues()}
            known = usable(seen, check_queue_name)
        out = []
        for name in known:
            depth = await self.admin.broker.queue_depth(
                work_queue(self.admin.settings.namespace, name)
            )
            pause = pauses.get(name)
            out.append(
                QueueInfo(
                    queue=name,
                    exists=depth is not None,
                    messages=depth[0] if depth else 0,
                    consumers=depth[1] if depth else 0,
                    per_minute=rates.get(name, 0),
                    **pause_fields(pause),
                )
            )
        return out

    async def _stop(
        self,
        job_id: str,
        state: JobState,
        reason: str | None,
        from_states: tuple[JobState, ...],
        generation: int | None,
    ) -> Job:
        found = await self._found(job_id, from_states, generation)
        # A worker moving the job it found on within its generation (pending, running,
        # retrying) is no one else's decision and does not make a stop fail; any other
        # change (a person's stop or resume, a failure's suspension) does.
        expected = ACTIVE if found["state"] in ACTIVE else (JobState(found["state"]),)
        row = await self.store.stop_job(
            job_id,
            state.value,
            person_cause(reason),
            self.admin.actor,
            [s.value for s in expected],
            found["generation"],
        )
        if row is None:
            raise await self._conflict(
                job_id, f"{_either(expected)} in generation {found['generation']}"
            )
        await self.store.audit(self.admin.actor, state.value, {"job_id": job_id}, 1)
        return Job.from_row(row)

    async def _found(
        self, job_id: str, from_states: tuple[JobState, ...], generation: int | None
    ) -> Row:
        """The job as an operation finds it when it begins: in one of ``from_states`` and,
        if given, in ``generation``; else JobNotFound or JobStateConflict."""
        row = await self.store.get_job(job_id)
        if row is None:
            raise JobNotFound(f"no job {job_id!r}")
        if row["state"] in from_states and generation in (None, row["generation"]):
            return row
        expected = _either(from_states)
        if generation is not None:
            expected += f" in generation {generation}"
        raise _no_longer(job_id, expected, row)

    async def _conflict(self, job_id: str, expected: str) -> Exception:
        row = await self.store.get_job(job_id)
        if row is None:
            return JobNotFound(f"no job {job_id!r}")
        return _no_longer(job_id, expected, row)


def _either(states: tuple[JobState, ...]) -> str:
    return " or ".join(s.value for s in states)


def _no_longer(job_id: str, expected: str, row: Row) -> JobStateConflict:
    return JobStateConflict(
        f"job {job_id!r} is no longer {expected} "
        f"(it is {row['state']} in generation {row['generation']})"
    )
