"""Job-state, checkpoint, queue- and type-pause queries: the lifecycle's half of the store.

Mixed into :class:`engine.pg.store.Store`, which owns the pool; kept apart so the dead-letter
and the lifecycle queries each read as one module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from engine.message import bounded_error
from engine.pg.port import Enqueued, JobIdTaken, OutboxKind, Staged, UniqueJob
from engine.pg.queries import Q
from engine.states import PERSON_SEQ, JobState

# Where a report row (engine.worker.tracker.Transition.row) carries its error's texts,
# and its JSON values.
ERRORS = slice(11, 14)
PAYLOAD, CHECKPOINT = 9, 18


def json_texts(values: Sequence[Any]) -> list[str | None]:
    """JSON values as the text of a ``$n::text[]::jsonb[]`` parameter (None stays NULL).

    Given as ``jsonb[]``, asyncpg reads a value that is a list as one more dimension of
    the array: a payload ``["a"]`` was stored as ``"a"``, and ``[1, 2]`` failed the batch.
    Encoded as the pool's jsonb codec does, and refused as asyncpg refuses what that
    codec cannot encode (DataError), so callers' fallbacks for rejected rows still run.
    """
    try:
        return [None if v is None else orjson.dumps(v, default=str).decode() for v in values]
    except orjson.JSONEncodeError as exc:
        raise asyncpg.DataError(f"invalid input for a JSON column: {exc}") from None


class JobStateQueries(ABC):
    """Queries on ``jobs``, ``queue_pauses`` and ``type_pauses``."""

    @property
    @abstractmethod
    def pool(self) -> asyncpg.Pool:
        """The connection pool of the store these queries are mixed into."""

    async def stage_outbox(
        self, conn: PoolConnectionProxy[asyncpg.Record], staged: Sequence[Staged]
    ) -> None:
        """Write publishes of any kind to the outbox on ``conn``, inside the caller's
        transaction: they are sent if and only if it commits."""
        if not staged:
            return
        await conn.execute(
            Q["insert_outbox"],
            [s.kind.value for s in staged],
            [s.dead_letter_id for s in staged],
            [s.job_id for s in staged],
            [s.queue for s in staged],
            [s.body for s in staged],
            [s.run_at for s in staged],
        )

    async def enqueue_unique(self, job: UniqueJob) -> Enqueued:
        """Insert the job under its key with its outbox row, or answer with the key's holder.

        Of concurrent callers with one key, one inserts; the others wait for its commit on
        the index and find it. A holder that releases the key between the refused insert
        and the look-up is no holder: the insert is tried again.
        """
        staged = Staged(OutboxKind.ENQUEUE, job.job_id, job.queue, job.body, run_at=job.run_at)
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                inserted = await conn.fetchval(
                    Q["insert_unique_job"],
                    job.job_id,
                    job.job_type,
                    job.queue,
                    job.max_retries,
                    job.payload,
                    job.suspend_on_failure,
                    job.created_at,
                    job.unique_key,
                )
                if inserted is not None:
                    await self.stage_outbox(conn, [staged])
                    return Enqueued(job.job_id, True, JobState.PENDING)
            holder = await self.pool.fetchrow(Q["key_holder"], job.unique_key)
            if holder is not None:
                return Enqueued(holder["job_id"], False, JobState(holder["state"]))
            if await self.pool.fetchrow(Q["get_job"], job.job_id) is not None:
                raise JobIdTaken(
                    f"job id {job.job_id[:64]!r} is taken by a job that does not hold "
                    f"unique key {job.unique_key[:64]!r}"
                )

    async def report(self, rows: Sequence[tuple[Any, ...]]) -> set[tuple[str, int]]:
        """Apply worker-reported transitions (one row per job, see JobReport) and record the
        failed attempts among them; return the (job id, seq) pairs that were applied."""
        if not rows:
            return set()
        columns = [list(c) for c in zip(*rows, strict=True)]
        for json_column in (PAYLOAD, CHECKPOINT):
            columns[json_column] = json_texts(columns[json_column])
        errors = [bounded_error(*row[ERRORS]) for row in rows]
        bounded = [list(c) for c in zip(*errors, strict=True)]
        applied = await self.pool.fetch(Q["report_transitions"], *columns, *bounded)
        return {(r["job_id"], r["seq"]) for r in applied}

    async def save_checkpoint(self, job_id: str, generation: int, state: Any) -> bool:
        status = await self.pool.execute(Q["save_checkpoint"], job_id, generation, state)
        return status.endswith(" 1")

    async def get_job(self, job_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(Q["get_job"], job_id)

    async def attempts(self, job_id: str) -> list[asyncpg.Record]:
        """The job's recorded attempts, in (generation, attempt) order."""
        return list(await self.pool.fetch(Q["job_attempts"], job_id))

    async def list_jobs(
        self,
        *,
        state: str | None = None,
        job_type: str | None = None,
        queue: str | None = None,
        limit: int = 50,
    ) -> list[asyncpg.Record]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("state", state), ("job_type", job_type), ("queue", queue)):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        args.append(limit)
        sql = (
            "SELECT job_id, generation, job_type, queue, state, attempt, max_retries, cause,"
            " error_type, error_message, updated_at FROM jobs"
            f" WHERE {' AND '.join(where) or 'true'} ORDER BY updated_at DESC LIMIT ${len(args)}"
        )
        return list(await self.pool.fetch(sql, *args))

    async def known_queues(self) -> list[str]:
        return [r["queue"] for r in await self.pool.fetch(Q["known_queues"])]

    async def count_jobs_capped(self, states: list[str], cap: int) -> dict[str, int]:
        """Jobs per state, each counted up to ``cap + 1`` (more than ``cap`` means "many")."""
        rows = await self.pool.fetch(Q["count_states_capped"], states, cap)
        return {r["state"]: int(r["n"]) for r in rows}

    async def activity(self, since: datetime) -> list[asyncpg.Record]:
        """(minute, series, n) rows since ``since``: succeeded, retrying and dead per minute."""
        return list(await self.pool.fetch(Q["activity_per_minute"], since))

    async def finished_last_minute(self) -> dict[str, int]:
        return {r["queue"]: r["n"] for r in await self.pool.fetch(Q["finished_last_minute"])}

    async def count_jobs_by_state(self) -> dict[str, int]:
        rows = await self.pool.fetch("SELECT state, count(*) AS n FROM jobs GROUP BY state")
        return {r["state"]: r["n"] for r in rows}

    async def stop_job(
        self,
        job_id: str,
        state: str,
        cause: str,
        actor: str,
        from_states: Sequence[str],
        generation: int,
    ) -> asyncpg.Record | None:
        """Compare-and-set: stop the job only if it is still in ``generation`` and one of
        ``from_states``; None if it is not (or does not exist)."""
        return await self.pool.fetchrow(
            Q["stop_job"], job_id, state, cause, actor, list(from_states), generation, PERSON_SEQ
        )

    async def resume_job(
        self,
        job_id: str,
        *,
        retries: int | None,
        payload: Any,
        replace_payload: bool,
        keep_checkpoint: bool,
        actor: str,
        build: Any,
        generation: int,
    ) -> asyncpg.Record | None:
        """Compare-and-set ``suspended`` in ``generation`` → ``pending`` in the next one, and
        stage its message; None if the job is no longer suspended in ``generation``."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                Q["resume_job"],
                job_id,
                retries,
                replace_payload,
                payload,
                keep_checkpoint,
                actor,
                generation,
            )
            if row is not None:
                resumed = Staged(OutboxKind.RESUME, row["job_id"], row["queue"], build(row))
                await self.stage_outbox(conn, [resumed])
            return row

    async def stopped_among(self, job_ids: Sequence[str]) -> dict[str, int]:
        rows = await self.pool.fetch(Q["stopped_among"], list(job_ids))
        return {r["job_id"]: r["generation"] for r in rows}

    async def paused_queues(self) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(Q["paused_queues"]))

    async def pause_queue(self, queue: str, actor: str, reason: str) -> bool:
        return await self.pool.fetchrow(Q["pause_queue"], queue, actor, reason) is not None

    async def resume_queue(self, queue: str) -> bool:
        return await self.pool.fetchrow(Q["resume_queue"], queue) is not None

    async def paused_types(self) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(Q["paused_types"]))

    async def pause_type(self, job_type: str, actor: str, reason: str) -> bool:
        return await self.pool.fetchrow(Q["pause_type"], job_type, actor, reason) is not None

    async def resume_type(self, job_type: str) -> bool:
        return await self.pool.fetchrow(Q["resume_type"], job_type) is not None

    async def known_types(self) -> list[str]:
        return [r["job_type"] for r in await self.pool.fetch(Q["known_types"])]
