"""The next generation of a stored job, as the message that starts it.

A person's requeue, an automatic reanimation and a resume all send a stored job back to
its queue; each builds the body here, from the row it changed, so that the three agree on
what carries over (payload, id, queue, creation time) and what starts anew (attempt 0).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.message import JobMessage, StepRef, encode, now_utc
from engine.pg.rows import Row
from engine.states import RequeueMode


def restarted_message(
    row: Row,
    *,
    generation: int,
    max_retries: int | None,
    checkpoint: Any,
    created_at: datetime | None,
    suspend_on_failure: bool | None = None,
) -> bytes:
    """The body of a job sent back to its queue: a stored row's job at attempt 0."""
    return encode(
        JobMessage(
            type=row["job_type"],
            payload=row["payload"],
            id=row["job_id"],
            queue=row["queue"],
            attempt=0,
            max_retries=max_retries,
            generation=generation,
            created_at=created_at or now_utc(),
            checkpoint=checkpoint,
            suspend_on_failure=suspend_on_failure,
            workflow=_step_of(row),
        )
    )


def _step_of(row: Row) -> StepRef | None:
    """The workflow step a stored job runs: a step moved back stays that step."""
    workflow_id = row.get("workflow_id")
    return None if workflow_id is None else StepRef.of_job(workflow_id, row["job_id"])


def requeued_message(row: Row, retries: int | None, mode: RequeueMode) -> bytes:
    """The next generation of a dead job: attempt 0, the new budget, checkpoint per mode."""
    return restarted_message(
        row,
        generation=row["generation"] + 1,
        max_retries=row["max_retries"] if retries is None else retries,
        checkpoint=row["checkpoint"] if mode is RequeueMode.RECOVER else None,
        created_at=row["enqueued_at"],
    )


def resumed_message(row: Row) -> bytes:
    """The message of a resumed job's next generation, from its row after the update."""
    return restarted_message(
        row,
        generation=row["generation"],
        max_retries=row["max_retries"],
        checkpoint=row["checkpoint"],
        created_at=row["created_at"],
        suspend_on_failure=row["suspend_on_failure"],
    )
