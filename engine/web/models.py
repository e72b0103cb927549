"""Request and response bodies of the admin HTTP API; the OpenAPI document is built from them.

They only describe shapes. What a selection means, and what may be requeued, resumed or
paused, is decided by :mod:`engine.admin.facade` and :mod:`engine.admin.lifecycle`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from engine.filters import (
    MAX_PAYLOAD_FILTER,
    DeadFilter,
    age_ago,
    bulk_selection,
    dead_filter,
    payload_filter,
)
from engine.message import MAX_ATTEMPTS, MAX_GENERATION
from engine.states import DeadStatus, JobState, RequeueMode

AGE = r"^\s*\d+\s*[smhdw]\s*$"  # documents (only) the format engine.filters.parse_age reads
# Bounds of what a request may carry: one request must not keep a server or a PostgreSQL
# backend busy (an unbounded "message contains" did, for ten minutes).
MAX_ID = 1024  # characters of a job id
MAX_IDS = 1000  # job ids per request
MAX_NAME = 200  # a job type, queue or error type
MAX_TEXT = 500  # a "message contains" substring
MAX_AGE = 32
MAX_TIME = 64  # an ISO 8601 time
PAYLOAD = (  # the payload filter's description, in the query string and in bodies
    "JSON text: dead letters whose payload contains it, as PostgreSQL's jsonb @> reads "
    'it (e.g. {"customer": 42}: that key with that value, among others).'
)


def _iso(value: Any) -> Any:
    """Refuse numbers: pydantic would read them as Unix times, the schema says ISO 8601.

    Bounded and parsed by float() (linear time): a regular expression here backtracked
    quadratically on a long run of digits and froze the server.
    """
    if isinstance(value, int | float):
        raise ValueError("use an ISO 8601 time such as 2026-01-31T12:00:00Z")
    if isinstance(value, str):
        if len(value) > MAX_TIME:
            raise ValueError(f"at most {MAX_TIME} characters: use an ISO 8601 time")
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("use an ISO 8601 time such as 2026-01-31T12:00:00Z")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_iso)]
JobIdText = Annotated[str, Field(min_length=1, max_length=MAX_ID)]


class Body(BaseModel):
    """Request bodies refuse unknown fields: a misspelt filter must not widen a selection."""

    model_config = ConfigDict(extra="forbid")


class Error(BaseModel):
    error: str = Field(description="What went wrong, naming the job, queue or field.")


class Total(BaseModel):
    total: int = Field(description="How many dead letters were (or, on a dry run, would be) hit.")


class Health(BaseModel):
    status: str = Field(description="'ok' when both services answer, else 'unavailable'.")
    rabbitmq: str | None = Field(description="null when RabbitMQ answers, else the problem.")
    postgresql: str | None = Field(description="null when PostgreSQL answers, else the problem.")


class DeadFilterBody(Body):
    """The same filters as ``GET /api/dead-letters`` and ``lazarus dead list``."""

    type: str | None = Field(default=None, max_length=MAX_NAME, description="Job type.")
    queue: str | None = Field(default=None, max_length=MAX_NAME)
    error_type: str | None = Field(default=None, max_length=MAX_NAME)
    error: str | None = Field(
        default=None, max_length=MAX_TEXT, description="Substring of the error message."
    )
    since: str | None = Field(
        default=None,
        max_length=MAX_AGE,
        json_schema_extra={"pattern": AGE},
        description="Died within this age: 90s, 15m, 2h, 30d.",
    )
    after: IsoTime | None = None
    before: IsoTime | None = None
    payload: str | None = Field(default=None, max_length=MAX_PAYLOAD_FILTER, description=PAYLOAD)

    @field_validator("since")
    @classmethod
    def _age(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            age_ago(str(info.field_name), value)
        return value

    @field_validator("payload")
    @classmethod
    def _payload(cls, value: str | None, info: ValidationInfo) -> str | None:
        payload_filter(str(info.field_name), value)
        return value

    def to_filter(self, status: DeadStatus | None = DeadStatus.DEAD) -> DeadFilter:
        """The engine's filter; ValueError names a bad ``since``."""
        return dead_filter(
            job_type=self.type,
            queue=self.queue,
            error_type=self.error_type,
            error_text=self.error,
            since=self.since,
            after=self.after,
            before=self.before,
            status=status,
            payload=self.payload,
        )


class Selection(Body):
    """Job ids, a filter, or ``all: true``: never everything by accident."""

    ids: list[JobIdText] = Field(default_factory=list, max_length=MAX_IDS, description="Job ids.")
    filter: DeadFilterBody | None = None
    all: bool = Field(default=False, description="Every dead letter (needed when nothing else).")
    dry_run: bool = Field(default=False, description="Only count what would be hit.")

    def selector(self) -> DeadFilter:
        """The dead letters named, with the same refusals as ``lazarus dead requeue``."""
        return bulk_selection(self.ids, (self.filter or DeadFilterBody()).to_filter(), self.all)


class RequeueBody(Selection):
    retries: int | None = Field(
        default=None,
        ge=0,
        le=MAX_ATTEMPTS,
        description="New retry budget (default: the job's own).",
    )
    mode: RequeueMode = Field(
        default=RequeueMode.RESTART,
        description="restart: from the beginning; recover: from the last checkpoint.",
    )


class RequeueOptions(BaseModel):
    """Retry budget and mode as the dashboard's form sends them (an empty field is unset:
    the operation's own default, as in the CLI and the API)."""

    retries: int | None = Field(default=None, ge=0, le=MAX_ATTEMPTS)
    mode: RequeueMode | None = None

    @field_validator("retries", "mode", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return None if value == "" else value


class PurgeBody(Body):
    older_than: str = Field(
        max_length=MAX_AGE,
        json_schema_extra={"pattern": AGE},
        description="Remove dead letters that died before this age: 30d.",
    )

    @field_validator("older_than")
    @classmethod
    def _age(cls, value: str, info: ValidationInfo) -> str:
        age_ago(str(info.field_name), value)
        return value

    def age(self) -> timedelta:
        return age_ago("older_than", self.older_than)


class WorkItemsBody(Body):
    work_item_ids: list[JobIdText] = Field(
        max_length=MAX_IDS, description="Job ids to move back; unknown ids count 0."
    )
    retries: int | None = Field(
        default=None,
        ge=0,
        le=MAX_ATTEMPTS,
        description="New retry budget (default: the job's own).",
    )


class DeadLetterRow(BaseModel):
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
    status: DeadStatus
    worker: str


class DeadLetterPage(BaseModel):
    items: list[DeadLetterRow]
    next_before_id: int | None = Field(description="Pass as before_id for the next page.")


class DeadLetterDetail(DeadLetterRow):
    traceback: str
    payload: Any
    checkpoint: Any
    headers: dict[str, Any]
    enqueued_at: datetime | None
    status_changed_at: datetime | None
    status_changed_by: str | None


class JobRow(BaseModel):
    job_id: str
    generation: int
    job_type: str
    queue: str
    state: JobState
    attempt: int
    max_retries: int | None
    cause: str | None
    error_type: str | None
    error_message: str | None
    updated_at: datetime


class JobPage(BaseModel):
    items: list[JobRow]


class JobDetail(JobRow):
    payload: Any
    checkpoint: Any
    suspend_on_failure: bool | None
    traceback: str | None
    stopped_by: str | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None


class AttemptRow(BaseModel):
    job_id: str
    generation: int
    attempt: int
    outcome: Literal["retrying", "dead", "suspended"]
    error_type: str
    error_message: str
    traceback: str
    worker: str | None
    at: datetime


class AttemptPage(BaseModel):
    """Every failed attempt of a job recorded, in (generation, attempt) order."""

    items: list[AttemptRow]


class StopBody(Body):
    reason: str | None = Field(
        default=None,
        max_length=10_000,
        description="Why; the cause becomes 'Requested by user: <reason>' (without one, "
        "'Requested by user').",
    )
    generation: int | None = Field(
        default=None,
        ge=0,
        le=MAX_GENERATION,
        description="Fail with 409 unless still this generation.",
    )


class ResumeBody(Body):
    mode: RequeueMode = Field(
        default=RequeueMode.RECOVER, description="recover: from the checkpoint; restart: afresh."
    )
    retries: int | None = Field(
        default=None, ge=0, le=MAX_ATTEMPTS, description="New retry budget."
    )
    payload: Any = Field(default=None, description="Replaces the payload when present.")
    generation: int | None = Field(
        default=None,
        ge=0,
        le=MAX_GENERATION,
        description="Fail with 409 unless still this generation.",
    )

    @field_validator("payload")
    @classmethod
    def _json(cls, value: Any) -> Any:
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError as exc:
            raise ValueError(f"payload cannot be stored as JSON: {exc}") from None
        return value


class Cause(BaseModel):
    job_id: str
    cause: str | None
    error_type: str | None
    traceback: str | None
    stopped_by: str | None
    since: datetime


class QueueRow(BaseModel):
    queue: str
    exists: bool = Field(description="False when RabbitMQ has no such queue yet.")
    messages: int
    consumers: int
    per_minute: int = Field(description="Tracked jobs that succeeded or died in the last minute.")
    paused: bool
    paused_by: str | None
    paused_at: datetime | None
    reason: str | None


class QueuePage(BaseModel):
    items: list[QueueRow]


class PauseBody(Body):
    reason: str = Field(default="Requested by user", max_length=10_000)


class QueueChange(BaseModel):
    queue: str
    changed: bool = Field(description="False when it was already in that state.")


class TypeRow(BaseModel):
    job_type: str
    paused: bool
    parked: int = Field(description="Jobs of this type waiting in its parked queue.")
    paused_by: str | None
    paused_at: datetime | None
    reason: str | None


class TypePage(BaseModel):
    items: list[TypeRow]


class TypeChange(BaseModel):
    job_type: str
    changed: bool = Field(description="False when it was already in that state.")
    moved: int = Field(default=0, description="Parked jobs moved back to their queues.")


class Stats(BaseModel):
    jobs: dict[str, int] = Field(description="Jobs per state (every state, zeros included).")
    dead_letters: int = Field(description="Dead letters waiting for a person (status dead).")


class AuditEntry(BaseModel):
    id: int
    at: datetime = Field(description="When it began.")
    actor: str = Field(description="Who: 'http:alice#3f2a9c1b@10.0.0.7', 'cli:user@host:pid'.")
    action: str
    selector: dict[str, Any] = Field(description="What it applied to.")
    count: int = Field(description="How many it changed (so far, while running).")
    state: str = Field(description="running, done, or interrupted (it stopped half way).")
    finished_at: datetime | None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_before_id: int | None = Field(description="Pass as before_id for the next page.")


class WorkerRow(BaseModel):
    worker_id: str = Field(description="host:pid")
    host: str
    pid: int
    version: str
    queues: list[str]
    job_types: dict[str, str] = Field(description="Job types it runs, each with its queue.")
    started_at: datetime
    last_seen: datetime
    stopped_at: datetime | None = Field(description="Set by a clean stop.")
    alive: bool = Field(description="Seen in the last 30 s and not stopped.")


class WorkerPage(BaseModel):
    items: list[WorkerRow]


# -- workflows ------------------------------------------------------------------------------

MAX_UNIQUE_NAME = 200
MAX_WORKFLOW_ID = 128


class StartWorkflowBody(Body):
    type: str = Field(min_length=1, max_length=MAX_NAME, description="A registered workflow.")
    input: Any = Field(default=None, description="JSON given to every step (or the items).")
    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_WORKFLOW_ID,
        description="Its id (default: a new one).",
    )
    unique_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_UNIQUE_NAME,
        description="Refuse a second workflow under this name while one is not over.",
    )
    if_absent: bool = Field(
        default=False, description="With unique_name: answer with the holder instead of 409."
    )


class Started(BaseModel):
    workflow_id: str
    created: bool = Field(description="False: a workflow already held the unique name.")
    state: str


class WorkflowRow(BaseModel):
    workflow_id: str
    workflow_type: str
    unique_name: str | None
    generation: int
    state: str
    cause: str | None
    stopped_by: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    progress: dict[str, int] = Field(description="Steps and items per state.")
    done: int = Field(description="Steps and items succeeded.")
    total: int = Field(description="Steps and items (fan-outs counted by their items).")


class WorkflowPage(BaseModel):
    items: list[WorkflowRow]
    next_before: str | None = Field(
        description="Pass as 'before' for the next page; null on the last one."
    )


class StepRow(BaseModel):
    step: str
    kind: str
    parent: str | None
    item: int | None
    job_type: str | None
    state: str
    remaining: int
    job_id: str | None
    result: Any
    updated_at: datetime


class WorkflowDetail(WorkflowRow):
    input: Any
    steps: list[StepRow] = Field(description="Its top-level steps and fan-outs.")
    needs_person: list[StepRow] = Field(description="Dead, suspended or cancelled steps.")
    causes: dict[str, str] = Field(description="Why each step that needs a person stopped.")
    fan_outs: dict[str, dict[str, int]] = Field(description="Each fan-out's items per state.")


class WorkflowIdsBody(Body):
    workflow_ids: list[Annotated[str, Field(min_length=1, max_length=MAX_WORKFLOW_ID)]] = Field(
        min_length=1, max_length=MAX_IDS
    )
    retries: int | None = Field(default=None, ge=0, le=MAX_ATTEMPTS)


class RetriesBody(Body):
    retries: int | None = Field(default=None, ge=0, le=MAX_ATTEMPTS)


class WorkflowStopBody(Body):
    reason: str | None = Field(default=None, max_length=MAX_TEXT)


class RestartBody(Body):
    from_step: str | None = Field(
        default=None, max_length=64, description="Run this step and what follows it again."
    )
