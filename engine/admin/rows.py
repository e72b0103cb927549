"""What the admin facade answers with: typed rows the CLI, the API and the dashboard read.

The stores keep returning their rows (an ``asyncpg.Record`` or a ``dict``); the facade
turns them into these. Field names are the column names and fields come in the order the
queries select them, so the JSON of a row (orjson writes dataclasses field by field) is
what the JSON of the row's dict was.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.pg.rows import Row


def _columns(names: Iterable[str], row: Row) -> dict[str, Any]:
    """The named columns of ``row``; a missing one is a KeyError, not a silent None."""
    return {name: row[name] for name in names}


@dataclass(frozen=True, slots=True)
class DeadLetterSummary:
    """One dead letter as a listing shows it: no payload, headers or traceback."""

    id: int
    job_id: str
    generation: int
    job_type: str
    queue: str
    attempts: int
    max_retries: int | None
    reason: str
    error_type: str
    error_message: str
    died_at: datetime
    status: str
    worker: str

    @classmethod
    def from_row(cls, row: Row) -> DeadLetterSummary:
        return cls(**_columns(cls.__dataclass_fields__, row))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One death of a job, as shown by ``dead show``."""

    id: int
    job_id: str
    generation: int
    job_type: str
    queue: str
    status: str
    reason: str
    error_type: str
    error_message: str
    traceback: str
    attempts: int
    max_retries: int | None
    payload: Any
    checkpoint: Any
    headers: dict[str, Any]
    enqueued_at: datetime | None
    died_at: datetime
    worker: str
    status_changed_at: datetime | None
    status_changed_by: str | None

    @classmethod
    def from_row(cls, row: Row) -> DeadLetter:
        return cls(**_columns(cls.__dataclass_fields__, row))


@dataclass(frozen=True, slots=True)
class DeadGroup:
    """Dead letters (or suspended jobs) of one job type that failed with one error type:
    how many, and their first and last death."""

    job_type: str
    error_type: str
    n: int
    first_died: datetime
    last_died: datetime

    @classmethod
    def from_row(cls, row: Row) -> DeadGroup:
        return cls(**_columns(cls.__dataclass_fields__, row))


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One job as a listing shows it: where it is and why it stopped, no payload."""

    job_id: str
    generation: int
    job_type: str
    queue: str
    state: str
    attempt: int
    max_retries: int | None
    cause: str | None
    error_type: str | None
    error_message: str | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> JobSummary:
        return cls(**_columns(cls.__dataclass_fields__, row))


@dataclass(frozen=True, slots=True)
class Job:
    """A job's whole row: its state, payload, checkpoint and last error, and the
    bookkeeping (``seq``, ``redeliveries``, ``token``) that orders its transitions."""

    job_id: str
    generation: int
    seq: int
    redeliveries: int
    job_type: str
    queue: str
    state: str
    attempt: int
    max_retries: int | None
    payload: Any
    checkpoint: Any
    suspend_on_failure: bool | None
    error_type: str | None
    error_message: str | None
    traceback: str | None
    cause: str | None
    stopped_by: str | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    token: str | None
    unique_key: str | None  # held while the job is not over (Client.enqueue_if_absent)
    workflow_id: str | None  # the workflow whose step it runs

    @classmethod
    def from_row(cls, row: Row) -> Job:
        return cls(**_columns(cls.__dataclass_fields__, row))


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed attempt of a job: how it ended (retrying, dead, suspended), its error,
    where and when; the job row keeps only the last error of a generation."""

    job_id: str
    generation: int
    attempt: int
    outcome: str
    error_type: str
    error_message: str
    traceback: str
    worker: str | None
    at: datetime

    @classmethod
    def from_row(cls, row: Row) -> Attempt:
        return cls(**_columns(cls.__dataclass_fields__, row))


@dataclass(frozen=True, slots=True)
class JobCause:
    """Why a suspended job stopped: a person (``stopped_by``) or a failure (its error
    type and traceback), and since when."""

    job_id: str
    cause: str | None
    error_type: str | None
    traceback: str | None
    stopped_by: str | None
    since: datetime

    @classmethod
    def from_row(cls, row: Row) -> JobCause:
        return cls(**_columns(cls.__dataclass_fields__, row))


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue: its depth and consumers in RabbitMQ, its rate, and its pause if any."""

    queue: str
    exists: bool
    messages: int
    consumers: int
    per_minute: int
    paused: bool
    paused_by: str | None
    paused_at: datetime | None
    reason: str | None

    @classmethod
    def from_row(cls, row: Row) -> QueueInfo:
        return cls(**_columns(cls.__dataclass_fields__, row))


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """A job type: its parked jobs (None when not asked) and its pause if any."""

    job_type: str
    parked: int | None
    paused: bool
    paused_by: str | None
    paused_at: datetime | None
    reason: str | None

    @classmethod
    def from_row(cls, row: Row) -> TypeInfo:
        return cls(**_columns(cls.__dataclass_fields__, row))


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A worker as the registry saw it: where it runs, what it handles, whether it is alive.
    (What a worker registers is :class:`engine.pg.workers.WorkerInfo`.)"""

    worker_id: str
    host: str
    pid: int
    version: str
    queues: list[str]
    job_types: dict[str, str]
    started_at: datetime
    last_seen: datetime
    stopped_at: datetime | None
    alive: bool

    @classmethod
    def from_row(cls, row: Row) -> WorkerRow:
        return cls(**_columns(cls.__dataclass_fields__, row))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what to how many, and whether it finished (running, done, interrupted)."""

    id: int
    at: datetime
    actor: str
    action: str
    selector: dict[str, Any]
    count: int
    state: str
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Row) -> AuditEntry:
        return cls(**_columns(cls.__dataclass_fields__, row))


@dataclass(frozen=True, slots=True)
class WorkflowSummary:
    """A workflow as a listing shows it, with its steps and items counted per state."""

    workflow_id: str
    workflow_type: str
    unique_name: str | None
    generation: int
    state: str
    cause: str | None  # why it is failed, suspended or cancelled
    stopped_by: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    progress: dict[str, int]  # steps and items (not fan-outs) per state

    @property
    def done(self) -> int:
        return self.progress.get("succeeded", 0)

    @property
    def total(self) -> int:
        return sum(self.progress.values())

    @classmethod
    def from_row(cls, row: Row, progress: dict[str, int]) -> WorkflowSummary:
        names = [n for n in cls.__dataclass_fields__ if n != "progress"]
        return cls(**_columns(names, row), progress=progress)


@dataclass(frozen=True, slots=True)
class WorkflowStep:
    """A step, a fan-out or a work item of a workflow, in its current generation."""

    step: str
    kind: str  # step, fan_out or item
    parent: str | None  # an item's fan-out
    item: int | None
    job_type: str | None
    queue: str | None
    generation: int
    state: str  # waiting, pending, running, retrying, succeeded, dead, suspended, cancelled
    remaining: int  # what it still waits on (a fan-out: its items not yet succeeded)
    job_id: str | None
    result: Any
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> WorkflowStep:
        return cls(**_columns(cls.__dataclass_fields__, row))


@dataclass(frozen=True, slots=True)
class WorkflowDetail:
    """A workflow with its input, its top-level steps and the steps and items that need a
    person (dead, suspended, cancelled), those first."""

    summary: WorkflowSummary
    input: Any
    steps: list[WorkflowStep]
    needs_person: list[WorkflowStep]
    causes: dict[str, str]  # why each step that needs a person stopped (its job's error)
    fan_outs: dict[str, dict[str, int]]  # each fan-out's items per state
