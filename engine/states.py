"""Job states and the outcome of one run of a job."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job stands; see the state picture in the README."""

    PENDING = "pending"  # published, not started yet
    RUNNING = "running"  # a worker runs its handler now
    RETRYING = "retrying"  # a broker-level retry is scheduled: healing itself, no worker slot held
    SUCCEEDED = "succeeded"  # the handler returned; final
    DEAD = "dead"  # retries exhausted or permanent error: in the dead-letter table; needs a person
    SUSPENDED = "suspended"  # stopped with its checkpoint, waiting for a person to resume it
    CANCELLED = "cancelled"  # stopped for good by a person; final


# The seq a person's stop writes on a job row, above any a worker reports, so that no late
# worker report overrides it. It, not stopped_by, tells who stopped a job: resuming leaves
# the resuming person in stopped_by, so a later failure's suspension still carries a name.
PERSON_SEQ = 2**30


class RequeueMode(StrEnum):
    """How a stored job starts its next generation."""

    RESTART = "restart"  # from the beginning: the checkpoint is cleared
    RECOVER = "recover"  # from the last checkpoint the job saved


class DeadStatus(StrEnum):
    """Status of one row of the dead-letter table."""

    DEAD = "dead"  # waiting for a person (or an automatic rule)
    REQUEUE_PENDING = (
        "requeue_pending"  # requeue committed, its message not yet confirmed by the broker
    )
    REQUEUED = "requeued"  # moved back to its queue as a new generation; kept as history
    DELETED = "deleted"  # removed by a person; kept as history until purged


class Verdict(StrEnum):
    """What the worker must do with a delivery once its handler has run (or could not)."""

    SUCCEEDED = "succeeded"  # ack
    RETRY = "retry"  # publish attempt + 1 to a delay queue, then ack
    DEAD = "dead"  # publish to the dead-letter exchange, then ack


class WorkflowState(StrEnum):
    """A workflow's state: computed from its steps, but for a person's suspend or cancel."""

    PENDING = "pending"  # started; no step has run yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every step succeeded
    FAILED = "failed"  # a step is dead, suspended or cancelled: it waits for a person
    SUSPENDED = "suspended"  # a person holds it: no new step starts
    CANCELLED = "cancelled"


HOLDS = frozenset({WorkflowState.SUSPENDED, WorkflowState.CANCELLED, WorkflowState.SUCCEEDED})
"""Workflow states in which no step is released."""
