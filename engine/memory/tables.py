"""The tables of the in-memory store and what every part of it shares: ids, the outage
switch, the checks that refuse what PostgreSQL refuses, the JSON codec of the pool.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from engine.errors import ServiceUnavailable
from engine.pg.port import Staged
from engine.states import JobState

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
    "token", "unique_key", "workflow_id",
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
          "enqueued_at", "workflow_id")  # fmt: skip
OUTBOX_CLAIMED = ("id", "kind", "dead_letter_id", "job_id", "queue", "body", "run_at")
ATTEMPT_COLUMNS = (
    "job_id", "generation", "attempt", "outcome", "error_type", "error_message", "traceback",
    "worker", "at",
)  # fmt: skip
# The states whose report records an attempt when it carries an error.
ATTEMPT_OUTCOMES = (JobState.RETRYING.value, JobState.DEAD.value, JobState.SUSPENDED.value)
ERROR_FIELDS = ("error_type", "error_message", "traceback")
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")  # mark_requeue_pending's pattern
_INT32 = range(-(2**31), 2**31)
STOPPED = (JobState.SUSPENDED.value, JobState.CANCELLED.value)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _rejected(what: str) -> asyncpg.DataError:
    return asyncpg.DataError(f"PostgreSQL would refuse {what}")


def checked_text(value: Any) -> Any:
    """A text value as PostgreSQL stores it: a NUL is refused."""
    if isinstance(value, str) and "\x00" in value:
        raise _rejected(f"a NUL character in {value[:40]!r}")
    return value


def checked_int32(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT32:
        raise _rejected(f"{value} as an integer (out of range)")
    return value


def as_jsonb(value: Any) -> Any:
    """A JSON value as it comes back from a jsonb column (the pool's codec); None is NULL."""
    if value is None:
        return None
    text = orjson.dumps(value, default=str)
    if b"\\u0000" in text:
        raise _rejected("\\u0000 in a JSON value")
    return orjson.loads(text)


def copied(row: dict[str, Any]) -> dict[str, Any]:
    """A row as a caller gets it: changing it (or its JSON values) changes no table."""
    return copy.deepcopy(row)


def pick(row: dict[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """Some columns of a row, copied."""
    return copy.deepcopy({name: row[name] for name in columns})


class Tables:
    """Rows by primary key, as dicts; ids from counters."""

    def __init__(self) -> None:
        self.dead_letters: dict[int, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.outbox: dict[int, dict[str, Any]] = {}
        self.audit_log: dict[int, dict[str, Any]] = {}
        self.queue_pauses: dict[str, dict[str, Any]] = {}
        self.type_pauses: dict[str, dict[str, Any]] = {}
        self.workers: dict[str, dict[str, Any]] = {}
        # job_attempts, keyed by (job_id, generation, attempt, outcome)
        self.job_attempts: dict[tuple[str, int, int, str], dict[str, Any]] = {}
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

    def _job_state_changed(self, job: dict[str, Any], was: str | None) -> None:
        """What follows a change of a job's state (a trigger in PostgreSQL): nothing here;
        the workflow tables override it."""

    def _dead_letter_stored(self, row: dict[str, Any]) -> None:
        """What follows a new dead-letter row (a trigger in PostgreSQL): nothing here; the
        workflow tables override it."""

    def _stage(self, staged: Staged) -> int:
        """One outbox row (insert_outbox), in the same step as the change it publishes;
        its id."""
        outbox_id = self._next("outbox")
        self.outbox[outbox_id] = {
            "id": outbox_id,
            "kind": staged.kind.value,
            "dead_letter_id": staged.dead_letter_id,
            "job_id": checked_text(staged.job_id),
            "queue": checked_text(staged.queue),
            "body": bytes(staged.body),
            "run_at": staged.run_at,
            "created_at": utc_now(),
        }
        return outbox_id
