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
from engine.states import JobState, WorkflowState

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
    STEP = "step"  # a workflow step released by its dependencies, or an item of a fan-out


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


@dataclass(frozen=True, slots=True)
class NewWorkflow:
    """A workflow to insert with its steps (generation 0)."""

    workflow_id: str
    workflow_type: str
    unique_name: str | None
    input: Any
    queue: str


@dataclass(frozen=True, slots=True)
class NewStep:
    """A top-level step or fan-out of a new generation, waiting on ``remaining`` others."""

    step: str
    kind: str  # 'step' or 'fan_out'
    job_type: str
    queue: str
    items_from: str | None
    remaining: int


@dataclass(frozen=True, slots=True)
class Launch:
    """A step or item made pending: its job row (pending, naming the workflow) and its
    message in the outbox, in the transaction that released it."""

    step: str
    job_id: str
    job_type: str
    queue: str
    payload: Any
    body: bytes


class WorkflowTxn(Protocol):
    """One transaction on workflows (see engine.workflows.progress for the rules).

    Every change to an existing workflow starts with :meth:`lock`: the changes of one
    workflow are serialized."""

    async def insert_workflow(
        self, workflow: NewWorkflow, steps: Sequence[NewStep], edges: Sequence[tuple[str, str]]
    ) -> bool:
        """Insert the workflow, its steps and edges; False if its unique name is held.
        WorkflowIdTaken if its id exists."""
        ...

    async def lock(self, workflow_id: str) -> Row | None:
        """The workflow's row, locked until the transaction ends; None if there is none."""
        ...

    async def finish_step(
        self, workflow_id: str, step: str, job_id: str, result: Any
    ) -> Row | None:
        """Compare-and-set: the step run by ``job_id`` (this generation's) is SUCCEEDED
        with ``result``; None if it is not that job's any more or already succeeded."""
        ...

    async def finish_fan_out(self, workflow_id: str, step: str) -> None:
        """A fan-out whose items all succeeded (or that had none) is SUCCEEDED."""
        ...

    async def fail_step(self, workflow_id: str, step: str, cause: str) -> None:
        """A step that cannot run (a fan-out without a usable item list) is DEAD and the
        workflow FAILED with ``cause``."""
        ...

    async def count_down(self, workflow_id: str, steps: Sequence[str]) -> Sequence[Row]:
        """One dependency (or item) fewer for each of ``steps``; the rows now at 0."""
        ...

    async def dependents(self, workflow_id: str, step: str) -> list[str]: ...

    async def ready(self, workflow_id: str) -> Sequence[Row]:
        """Top-level steps waiting with nothing left to wait on (held while the workflow
        was suspended)."""
        ...

    async def result(self, workflow_id: str, step: str) -> Any: ...

    async def add_items(
        self, workflow_id: str, fan_out: Row, generation: int, items: Sequence[Any]
    ) -> None:
        """The work items of a fan-out (waiting on nothing); the fan-out waits on them."""
        ...

    async def launch(self, workflow_id: str, launches: Sequence[Launch]) -> None: ...

    async def top_level_done(self, workflow_id: str) -> int:
        """One top-level step fewer left; how many are left."""
        ...

    async def set_state(
        self,
        workflow_id: str,
        state: WorkflowState,
        cause: str | None = None,
        actor: str | None = None,
    ) -> None:
        """The workflow's state, with why (``cause``) and who (``actor``, for a person)."""
        ...

    async def top_steps(self, workflow_id: str) -> Sequence[Row]:
        """The workflow's top-level steps and fan-outs (not items), in name order."""
        ...

    async def edges(self, workflow_id: str) -> list[tuple[str, str]]:
        """(depends_on, step) of every dependency of the workflow."""
        ...

    async def step_jobs(self, workflow_id: str, states: Sequence[str]) -> Sequence[Row]:
        """Step, job id, job generation, job state, cause and last error of the steps and
        items in ``states``."""
        ...

    async def reset(self, workflow_id: str, steps: Sequence[str], generation: int) -> None:
        """``steps`` (top-level) wait again in ``generation``, without job or result, their
        fan-outs' items gone; every step's wait and the steps left counted anew."""
        ...


class WorkflowIdTaken(ValueError):
    """A workflow was started with the id of one that exists."""


class StepStore(Protocol):
    """What workflow steps use: a transaction on workflows, and their results."""

    def workflow_txn(self) -> AbstractAsyncContextManager[WorkflowTxn]:
        """A transaction: committed if the block exits normally, rolled back if it raises."""
        ...

    async def step_result(self, workflow_id: str, step: str) -> tuple[bool, Any]:
        """(whether ``step`` succeeded, its result)."""
        ...

    async def item_results(
        self, workflow_id: str, fan_out: str, after: int, limit: int
    ) -> list[tuple[int, Any]]:
        """(index, result) of the fan-out's succeeded items after index ``after``."""
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


class WorkerStore(StepStore, OutboxStore, Protocol):
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


class WorkflowStore(StepStore, OutboxStore, Protocol):
    """What starting and managing workflows use: their transactions, the outbox, reads."""

    async def unique_holder(self, unique_name: str) -> Row | None:
        """The workflow holding ``unique_name`` (its id and state), if any."""
        ...

    async def get_workflow(self, workflow_id: str) -> Row | None: ...

    async def workflow_steps(
        self,
        workflow_id: str,
        *,
        after: str = "",
        limit: int = 1000,
        top_level: bool = False,
        states: Sequence[str] | None = None,
    ) -> Sequence[Row]:
        """Steps and items in name order, from the first after ``after``; only top-level
        steps and fan-outs with ``top_level``, only those in ``states`` if given."""
        ...

    async def workflow_progress(self, workflow_id: str) -> dict[str, int]:
        """Steps and items (not fan-outs) per state."""
        ...

    async def list_workflows(
        self,
        *,
        state: str | None = None,
        workflow_type: str | None = None,
        limit: int = 50,
        before: tuple[datetime, str] | None = None,
    ) -> Sequence[Row]:
        """Newest first; ``before``: (created_at, workflow_id) of the last row seen."""
        ...

    async def progress_of(self, workflow_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """:meth:`workflow_progress` of several workflows at once."""
        ...

    async def fan_out_progress(self, workflow_id: str) -> dict[str, dict[str, int]]:
        """Each fan-out's items per state."""
        ...


class UniqueJobStore(OutboxStore, Protocol):
    """What :meth:`engine.client.Client.enqueue_if_absent` uses: insert under a unique key,
    then drain the outbox."""

    async def enqueue_unique(self, job: UniqueJob) -> Enqueued:
        """In one transaction, the job's row (pending, with its key) and its outbox row; if a
        job holds the key, nothing is inserted and that job is the answer. JobIdTaken if
        the job id belongs to a job that does not hold the key."""
        ...


class AdminStore(WorkflowStore, Protocol):
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
