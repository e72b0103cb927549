"""Wire format v1 of a job message: what any service in any language publishes.

This module knows nothing of AMQP; it turns bytes into a :class:`JobMessage` and
back. A body that breaks the format raises :class:`MessageError` with a reason,
which the worker turns into a dead letter instead of a retry loop.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from engine.errors import MessageError

FORMAT_VERSION = 1
CONTENT_TYPE = "application/json"
_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
# The one 32-bit bound: generations, attempts and counts are PostgreSQL integer columns.
MAX_INT32 = 2**31 - 1
MAX_ATTEMPTS = 1_000_000  # bound of 'attempt' and 'max_retries', well inside MAX_INT32
MAX_GENERATION = MAX_INT32
# A job id travels as the AMQP message_id of every copy (a short string: 255 bytes at
# most) and keys PostgreSQL indexes; text columns refuse NUL, and logs and terminals
# should get no control characters.
MAX_ID_BYTES = 255
_JOB_ID = re.compile(r"^[^\u0000-\u001f\u007f-\u009f]{0,255}$")
# Counts the worker reads from headers go into 32-bit columns.
MAX_COUNT = MAX_INT32
# A workflow's id is part of its steps' job ids (engine.message.StepRef.job_id), which
# must stay within MAX_ID_BYTES: the id takes at most half.
MAX_WORKFLOW_ID_BYTES = 128
_STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
MAX_ITEMS = 100_000  # work items of one fan-out
# A step's result and a workflow's input are stored as jsonb and travel in messages.
MAX_RESULT_BYTES = 1_048_576
MAX_INPUT_BYTES = 262_144

# Error texts, in headers and in the attempts table. Headers travel in one AMQP frame
# (frame_max is 128 KiB by default): a huge error text would make every publish of the
# copy fail. Past these bounds the text is cut, saying so.
MAX_ERROR_TYPE = 255
MAX_ERROR_MESSAGE = 8_192
MAX_TRACEBACK = 32_768
CUT = " [...cut: {n} more characters]"


# The wire's headers, every one of them here. A dead-letter copy carries why and where
# the job died:
H_REASON = "x-lazarus-reason"
H_ERROR_TYPE = "x-lazarus-error-type"
H_ERROR_MESSAGE = "x-lazarus-error-message"
H_TRACEBACK = "x-lazarus-traceback"
H_WORKER = "x-lazarus-worker"
H_QUEUE = "x-lazarus-queue"
H_DIED_AT = "x-lazarus-died-at"
H_ATTEMPTS = "x-lazarus-attempts"
# the id a stored row names when the body's own id was unusable (engine.deadletters.records):
H_ORIGINAL_ID = "x-lazarus-original-job-id"
# redeliveries counted by the worker (engine.worker.redelivery):
H_REDELIVERIES = "x-lazarus-redeliveries"
# a job whose type the worker that got it does not know (engine.worker.unknown_types): when it
# was first turned back, and how often since:
H_UNKNOWN_SINCE = "x-lazarus-unknown-since"
H_UNKNOWN_BOUNCES = "x-lazarus-unknown-bounces"
# a suspended job's message kept in a parked queue, naming the queue it came from:
H_PARKED_FROM = "x-lazarus-parked-from"


def now_utc() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return str(uuid.uuid4())


def check_queue_name(name: str) -> str:
    """Return ``name`` if it can name a queue, else raise ValueError naming it."""
    if not _QUEUE_NAME.fullmatch(name):
        raise ValueError(f"queue name {name!r}: use 1-100 letters, digits, '_', '.' or '-'")
    return name


def is_queue_name(name: str) -> bool:
    """Whether ``name`` can name a queue (check_queue_name without the error)."""
    return _QUEUE_NAME.fullmatch(name) is not None


def check_type_name(name: str) -> str:
    """Return ``name`` if it can name a job type, else raise ValueError naming it."""
    if not _TYPE_NAME.fullmatch(name):
        raise ValueError(
            f"job type {name!r}: use 1-200 letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or '_'"
        )
    return name


def job_id_problem(job_id: str) -> str | None:
    """Why ``job_id`` cannot be a job id (None if it can): at most ``MAX_ID_BYTES`` bytes
    of UTF-8, no control characters."""
    if not _JOB_ID.fullmatch(job_id):
        if len(job_id) > MAX_ID_BYTES:
            return f"is longer than {MAX_ID_BYTES} bytes of UTF-8"
        return "contains a control character (U+0000-U+001F, U+007F-U+009F)"
    try:
        size = len(job_id.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid UTF-8 text"
    if size > MAX_ID_BYTES:
        return f"is {size} bytes of UTF-8, longer than the {MAX_ID_BYTES} allowed"
    return None


def check_headers(headers: Mapping[str, Any] | None) -> None:
    """Raise MessageError if a header the worker reads is out of its bounds.

    ``x-lazarus-redeliveries``: an integer from 0 to ``MAX_COUNT``.
    """
    count = (headers or {}).get(H_REDELIVERIES)
    if count is None:
        return
    if not isinstance(count, int) or isinstance(count, bool):
        raise MessageError(f"header {H_REDELIVERIES!r} has the wrong type: {type(count).__name__}")
    if not 0 <= count <= MAX_COUNT:
        raise MessageError(f"header {H_REDELIVERIES!r} must be from 0 to {MAX_COUNT}: {count}")


# A JSON-escaped NUL: "\u0000" after an even number of backslashes (a backslash written
# out as "\\" followed by the text "u0000" is no NUL).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def json_problem(value: Any, limit: int) -> str | None:
    """Why ``value`` cannot be stored as jsonb within ``limit`` bytes (None if it can):
    not JSON, too large, or holding a NUL character, which PostgreSQL's jsonb refuses."""
    try:
        text = orjson.dumps(value)
    except TypeError as exc:
        return f"is not JSON: {exc}"
    if len(text) > limit:
        return f"is {len(text)} bytes of JSON, more than the {limit} allowed"
    if _NUL_ESCAPE.search(text):
        return "holds a NUL character (\\u0000), which PostgreSQL cannot store"
    return None


def check_step_name(name: str) -> str:
    """Return ``name`` if it can name a workflow step, else raise ValueError naming it."""
    if not _STEP_NAME.fullmatch(name):
        raise ValueError(
            f"step name {name!r}: use 1-64 letters, digits, '_' or '-', starting with a "
            "letter or '_'"
        )
    return name


def workflow_id_problem(workflow_id: str) -> str | None:
    """Why ``workflow_id`` cannot be a workflow id (None if it can): a job id's rules,
    within ``MAX_WORKFLOW_ID_BYTES``."""
    problem = job_id_problem(workflow_id)
    if problem is not None:
        return problem
    if not workflow_id:
        return "is empty"
    if len(workflow_id.encode("utf-8")) > MAX_WORKFLOW_ID_BYTES:
        return f"is longer than {MAX_WORKFLOW_ID_BYTES} bytes of UTF-8"
    return None


@dataclass(frozen=True, slots=True)
class StepRef:
    """The workflow step a job runs: which workflow, in which of its generations, which
    step, and for a work item of a fan-out, its index."""

    workflow_id: str
    generation: int
    step: str
    item: int | None = None

    @property
    def name(self) -> str:
        """The step's name in its workflow: ``load`` or, for an item, ``load[17]``."""
        return self.step if self.item is None else f"{self.step}[{self.item}]"

    @property
    def job_id(self) -> str:
        """The id of the job that runs this step in this generation (one per generation,
        so each generation's dead letters and attempts stay apart)."""
        return f"{self.workflow_id}/{self.generation}/{self.name}"

    @classmethod
    def of_job(cls, workflow_id: str, job_id: str) -> StepRef:
        """The step a job of ``workflow_id`` runs, read back from its id (see ``job_id``).
        ValueError if the id is no step job's id of that workflow."""
        rest = job_id.removeprefix(f"{workflow_id}/")
        generation, _, name = rest.partition("/")
        step, bracket, item = name.partition("[")
        if rest == job_id or not generation.isdigit() or not _STEP_NAME.fullmatch(step):
            raise ValueError(f"job {job_id!r} runs no step of workflow {workflow_id!r}")
        if bracket and not (item.endswith("]") and item[:-1].isdigit()):
            raise ValueError(f"job {job_id!r} runs no step of workflow {workflow_id!r}")
        return cls(workflow_id, int(generation), step, int(item[:-1]) if bracket else None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.workflow_id,
            "generation": self.generation,
            "step": self.step,
        }
        if self.item is not None:
            out["item"] = self.item
        return out


@dataclass(frozen=True, slots=True)
class JobMessage:
    """One job as it travels on the wire; every retry is a new copy with ``attempt + 1``."""

    type: str
    payload: Any
    id: str = field(default_factory=new_job_id)
    queue: str = "default"
    attempt: int = 0  # broker-level runs already made (0 on the first run)
    max_retries: int | None = None  # None: the handler's policy decides
    generation: int = 0  # bumped by every requeue of a dead or suspended job
    created_at: datetime = field(default_factory=now_utc)
    checkpoint: Any = None  # progress to resume from (recover mode); None: start over
    suspend_on_failure: bool | None = None  # None: the handler's policy decides
    workflow: StepRef | None = None  # the workflow step this job runs, if any
    v: int = FORMAT_VERSION

    @property
    def key(self) -> str:
        """Idempotency key of this run: job id and generation."""
        return f"{self.id}:{self.generation}"

    def next_attempt(self) -> JobMessage:
        return replace(self, attempt=self.attempt + 1)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "v": self.v,
            "id": self.id,
            "type": self.type,
            "queue": self.queue,
            "payload": self.payload,
            "attempt": self.attempt,
            "max_retries": self.max_retries,
            "generation": self.generation,
            "created_at": self.created_at.isoformat(),
            "checkpoint": self.checkpoint,
            "suspend_on_failure": self.suspend_on_failure,
        }
        if self.workflow is not None:
            out["workflow"] = self.workflow.to_dict()
        return out


def encode(message: JobMessage) -> bytes:
    return orjson.dumps(message.to_dict())


def _require(body: dict[str, Any], name: str, kinds: type | tuple[type, ...]) -> Any:
    value = body[name]
    if not isinstance(value, kinds) or (isinstance(value, bool) and kinds is int):
        raise MessageError(f"field {name!r} has the wrong type: {type(value).__name__}")
    return value


def _optional(body: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    if body.get(name) is None:
        return default
    return _require(body, name, kind)


def decode(
    raw: bytes,
    *,
    max_bytes: int = 1_048_576,
    fallback_id: str | None = None,
    default_queue: str = "default",
) -> JobMessage:
    """Parse a message body; raise MessageError saying what is wrong with it.

    ``default_queue``: the queue a body without ``queue`` belongs to (a worker passes the
    queue it consumed it from, so its retries come back there).
    """
    if len(raw) > max_bytes:
        raise MessageError(f"message body is {len(raw)} bytes, more than the {max_bytes} allowed")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"message body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MessageError("message body must be a JSON object")
    version = _optional(body, "v", int, FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise MessageError(
            f"unsupported format version {version} (this worker reads {FORMAT_VERSION})"
        )
    if "type" not in body:
        raise MessageError("field 'type' is missing")
    job_type = _require(body, "type", str)
    if not _TYPE_NAME.fullmatch(job_type):
        raise MessageError(f"field 'type' is not a valid job type name: {job_type!r}")
    queue = _optional(body, "queue", str, default_queue)
    try:
        check_queue_name(queue)
    except ValueError as exc:
        raise MessageError(str(exc)) from None
    attempt = _optional(body, "attempt", int, 0)
    generation = _optional(body, "generation", int, 0)
    max_retries = _optional(body, "max_retries", int, None)
    if attempt < 0 or generation < 0 or (max_retries is not None and max_retries < 0):
        raise MessageError("fields 'attempt', 'generation' and 'max_retries' must not be negative")
    if attempt > MAX_ATTEMPTS or (max_retries is not None and max_retries > MAX_ATTEMPTS):
        raise MessageError(f"fields 'attempt' and 'max_retries' must not exceed {MAX_ATTEMPTS}")
    if generation > MAX_GENERATION:
        raise MessageError(f"field 'generation' must not exceed {MAX_GENERATION}")
    created_raw = _optional(body, "created_at", str, None)
    try:
        created_at = datetime.fromisoformat(created_raw) if created_raw else now_utc()
    except ValueError:
        raise MessageError(f"field 'created_at' is not an ISO 8601 time: {created_raw!r}") from None
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    job_id = _optional(body, "id", str, None)
    if job_id:
        problem = job_id_problem(job_id)
        if problem:
            raise MessageError(f"field 'id' {problem}: {_excerpt(job_id)}")
    elif fallback_id:
        problem = job_id_problem(fallback_id)
        if problem:
            raise MessageError(
                f"the AMQP message_id (the job id of a body without 'id') {problem}: "
                f"{_excerpt(fallback_id)}"
            )
        job_id = fallback_id
    else:
        job_id = new_job_id()
    return JobMessage(
        type=job_type,
        payload=body.get("payload"),
        id=job_id,
        queue=queue,
        attempt=attempt,
        max_retries=max_retries,
        generation=generation,
        created_at=created_at,
        checkpoint=body.get("checkpoint"),
        suspend_on_failure=_optional(body, "suspend_on_failure", bool, None),
        workflow=_step_ref(body),
    )


def _step_ref(body: dict[str, Any]) -> StepRef | None:
    """The body's ``workflow`` field, checked: None if absent or null."""
    raw = _optional(body, "workflow", dict, None)
    if raw is None:
        return None
    for name in ("id", "generation", "step"):
        if raw.get(name) is None:
            raise MessageError(f"field 'workflow.{name}' is missing")
    workflow_id, step = raw["id"], raw["step"]
    generation, item = raw["generation"], raw.get("item")
    if not isinstance(workflow_id, str) or not isinstance(step, str):
        raise MessageError("fields 'workflow.id' and 'workflow.step' must be strings")
    problem = workflow_id_problem(workflow_id)
    if problem:
        raise MessageError(f"field 'workflow.id' {problem}: {_excerpt(workflow_id)}")
    if not _STEP_NAME.fullmatch(step):
        raise MessageError(f"field 'workflow.step' is not a step name: {_excerpt(step)}")
    for name, value in (("generation", generation), ("item", item)):
        if value is None and name == "item":
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise MessageError(f"field 'workflow.{name}' must be an integer")
    if not 0 <= generation <= MAX_GENERATION:
        raise MessageError(f"field 'workflow.generation' must be from 0 to {MAX_GENERATION}")
    if item is not None and not 0 <= item < MAX_ITEMS:
        raise MessageError(f"field 'workflow.item' must be from 0 to {MAX_ITEMS - 1}")
    return StepRef(workflow_id, generation, step, item)


def _excerpt(text: str, limit: int = 64) -> str:
    """``text`` for an error message: its start, quoted, and its length if cut."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def fallback_job_id(body: bytes, message_id: str | None) -> str:
    """An id for a dead letter's body without a usable one: the AMQP message id if it can
    be a job id, else one derived from the bytes, so that copies of one dead message give
    one row (and a copy's message id always fits)."""
    if message_id and job_id_problem(message_id) is None:
        return message_id
    return str(uuid.UUID(bytes=hashlib.sha256(body).digest()[:16], version=5))


def bounded(text: str, limit: int, *, keep_end: bool = False) -> str:
    """``text`` within ``limit`` characters; a traceback keeps its end, where the error is."""
    if len(text) <= limit:
        return text
    kept = limit - len(CUT.format(n=len(text)))
    marker = CUT.format(n=len(text) - kept)
    while len(marker) + kept != limit:  # the count's digits may be one fewer: settle it
        kept = limit - len(marker)
        marker = CUT.format(n=len(text) - kept)
    return marker + text[-kept:] if keep_end else text[:kept] + marker


def bounded_error(
    error_type: str | None, message: str | None, traceback: str | None
) -> tuple[str | None, str | None, str | None]:
    """An error's three texts within the bounds a dead letter's headers use."""
    return (
        None if error_type is None else bounded(error_type, MAX_ERROR_TYPE),
        None if message is None else bounded(message, MAX_ERROR_MESSAGE),
        None if traceback is None else bounded(traceback, MAX_TRACEBACK, keep_end=True),
    )
