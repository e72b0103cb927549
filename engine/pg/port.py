"""The store port: what each part of the engine asks of a store, one Protocol per group.

Two stores implement them: :class:`engine.pg.store.Store` (PostgreSQL) and
:class:`engine.memory.store.InMemoryStore`; ``tests/contract/test_store.py`` holds them to
the same rules. The dashboard's summaries, pruning, sessions and migrations stay on the
PostgreSQL store only (their value is the SQL's bounded cost); :func:`needs_postgres` says
so clearly when another store is asked for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from engine.errors import NeedsPostgres
from engine.filters import DeadFilter
from engine.pg.rows import Row
from engine.states import JobState

if TYPE_CHECKING:
    from engine.pg.store import DeadRecord, Store
    from engine.pg.workers import WorkerInfo

Build = Callable[[Row], bytes]
"""The new message body of a row a compare-and-set changed (its next generation)."""


class OutboxKind(StrEnum):
    """Why a publish was staged in the outbox."""

    REQUEUE = "requeue"  # a dead letter moved back (its row becomes 'requeued' once sent)
    RESUME = "resume"  # a suspended job's next generation
    ENQUEUE = "enqueue"  # a new job inserted under a unique key
    STEP = "step"  # reserved: a workflow's next step


@dataclass(frozen=True, slots=True)
class Staged:
    """One publish written to the outbox in the transaction of the change it publishes;
    the relay sends ``body`` to the work exchange with ``queue`` as routing key, through a
    delay queue if ``run_at`` is still ahead."""

    kind: OutboxKind
    job_id: str
    queue: str
    body: bytes
    dead_letter_id: int | None = None
    run_at: datetime | None = None


KEY_HELD = frozenset(
    {JobState.PENDING, JobState.RUNNING, JobState.RETRYING, JobState.SUSPENDED, JobState.DEAD}
)
"""The states in which a job holds its unique key: it is not over for good (a dead job may
be requeued). Succeeded and cancelled release it. The index ``jobs_unique_key_held``
(migration 008) and the query ``key_holder`` list the same states."""


@dataclass(frozen=True, slots=True)
class UniqueJob:
    """A new job to insert as pending under ``unique_key``, with its message staged in the
    outbox (kind ``enqueue``) in the same transaction."""

    unique_key: str
    job_id: str
    job_type: str
    queue: str
    payload: Any
    max_retries: int | None
    suspend_on_failure: bool | None
    created_at: datetime
    body: bytes
    run_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Enqueued:
    """The answer of an enqueue-if-absent: the job created, or the one holding the key.

    ``state`` is the holder's state when ``created`` is false, and pending when true.
    """

    job_id: str
    created: bool
    state: JobState


class JobIdTaken(ValueError):
    """An enqueue-if-absent asked for a job id that a job outside its key already has."""


class WorkerStore(Protocol):
    """What the worker path uses: tracker, settler, redelivery, control, unknown types,
    the dead-letter writer and records, and the workers' registry."""

    async def report(self, rows: Sequence[tuple[Any, ...]]) -> set[tuple[str, int]]:
        """Apply worker-reported transitions (tracker's 20-column rows) and record each
        applied one that carries an error as an attempt; return the applied (job id, seq)
        pairs."""
        ...

    async def save_checkpoint(self, job_id: str, generation: int, state: Any) -> bool: ...

    async def get_job(self, job_id: str) -> Row | None: ...

    async def stored_death(self, job_id: str, generation: int) -> Row | None: ...

    async def insert_dead(self, records: Sequence[DeadRecord]) -> int:
        """Store a batch; one row per (job id, generation), later copies ignored."""
        ...

    async def stopped_among(self, job_ids: Sequence[str]) -> dict[str, int]: ...

    async def paused_queues(self) -> Sequence[Row]: ...

    async def paused_types(self) -> Sequence[Row]: ...

    async def register_worker(self, info: WorkerInfo) -> None: ...

    async def worker_seen(self, worker_id: str) -> None: ...

    async def worker_stopped(self, worker_id: str) -> None: ...

    async def list_workers(
        self, seen_since: datetime, alive_since: datetime, limit: int
    ) -> Sequence[Row]: ...

    async def known_routes(self, seen_since: datetime) -> Sequence[Row]: ...

    async def recover(self, exc: BaseException) -> None:
        """After an error, make sure the next call does not fail for the same reason."""
        ...


class OutboxStore(Protocol):
    """What the relay and automatic reanimation use: stage requeues, claim the outbox."""

    def claim_outbox(self, limit: int) -> AbstractAsyncContextManager[Sequence[Row]]:
        """Up to ``limit`` outbox rows no other open claim holds; sent if the block exits
        normally, left in the outbox if it raises."""
        ...

    async def stage_requeue(self, row_ids: Sequence[int], actor: str, build: Build) -> int:
        """Compare-and-set ``dead`` -> ``requeue_pending`` plus the outbox rows, in one step."""
        ...

    async def reanimation_candidates(
        self,
        job_type: str,
        error_types: Sequence[str],
        died_before: datetime,
        actor: str,
        max_times: int,
        limit: int,
    ) -> list[int]: ...

    async def audit(
        self, actor: str, action: str, selector: dict[str, Any], count: int
    ) -> None: ...


class UniqueJobStore(OutboxStore, Protocol):
    """What :meth:`engine.client.Client.enqueue_if_absent` uses: insert under a unique key,
    then drain the outbox."""

    async def enqueue_unique(self, job: UniqueJob) -> Enqueued:
        """In one transaction, the job's row (pending, with its key) and its outbox row; if a
        job holds the key, nothing is inserted and that job is the answer. JobIdTaken if
        the job id belongs to a job that does not hold the key."""
        ...


class AdminStore(OutboxStore, Protocol):
    """What :class:`engine.admin.facade.Admin` and :class:`engine.admin.lifecycle.Lifecycle`
    use, but the dashboard-only queries (see :func:`needs_postgres`)."""

    # -- dead letters
    async def history(self, job_id: str) -> Sequence[Row]: ...

    async def list_dead(
        self, selector: DeadFilter, *, limit: int = 50, before_id: int | None = None
    ) -> Sequence[Row]: ...

    async def count_dead(self, selector: DeadFilter, cap: int | None = None) -> int: ...

    async def matching_ids(
        self, selector: DeadFilter, *, after_id: int, upto_id: int, limit: int
    ) -> list[int]: ...

    async def last_dead_id(self) -> int: ...

    async def mark_deleted(self, row_ids: Sequence[int], actor: str) -> int: ...

    async def purge(self, older_than: datetime) -> int: ...

    async def audit_begin(self, actor: str, action: str, selector: dict[str, Any]) -> int: ...

    async def audit_progress(self, entry: int, count: int, state: str = "running") -> None: ...

    async def audit_recent(
        self, limit: int = 20, before_id: int | None = None
    ) -> Sequence[Row]: ...

    async def list_workers(
        self, seen_since: datetime, alive_since: datetime, limit: int
    ) -> Sequence[Row]: ...

    # -- jobs
    async def get_job(self, job_id: str) -> Row | None: ...

    async def attempts(self, job_id: str) -> Sequence[Row]:
        """The job's failed attempts (job_attempts), in (generation, attempt) order."""
        ...

    async def list_jobs(
        self,
        *,
        state: str | None = None,
        job_type: str | None = None,
        queue: str | None = None,
        limit: int = 50,
    ) -> Sequence[Row]: ...

    async def stop_job(
        self,
        job_id: str,
        state: str,
        cause: str,
        actor: str,
        from_states: Sequence[str],
        generation: int,
    ) -> Row | None: ...

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
    ) -> Row | None: ...

    async def count_jobs_by_state(self) -> dict[str, int]: ...

    async def finished_last_minute(self) -> dict[str, int]: ...

    async def known_types(self) -> list[str]: ...

    async def known_queues(self) -> list[str]: ...

    # -- pauses
    async def paused_queues(self) -> Sequence[Row]: ...

    async def pause_queue(self, queue: str, actor: str, reason: str) -> bool: ...

    async def resume_queue(self, queue: str) -> bool: ...

    async def paused_types(self) -> Sequence[Row]: ...

    async def pause_type(self, job_type: str, actor: str, reason: str) -> bool: ...

    async def resume_type(self, job_type: str) -> bool: ...


def needs_postgres(store: object, what: str) -> Store:
    """``store`` as the PostgreSQL store, or NeedsPostgres naming ``what`` needed it."""
    from engine.pg.store import Store

    if not isinstance(store, Store):
        raise NeedsPostgres(f"{what} needs PostgreSQL: {type(store).__name__} does not answer it")
    return store
