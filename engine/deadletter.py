"""The dead-letter protocol, with its crash points in one place.

A dying job is published, with a confirm, to the fanout exchange ``<ns>.dead``
(the original body untouched, the error in ``x-lazarus-*`` headers, the job id
as message id) and only then acked. The exchange feeds a retained queue and
the recorder's queue; the recorder stores each death once, keyed by job id and
generation. See docs/dead-letters.md for what a crash at each step leaves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.broker import Broker
from engine.executor import ErrorInfo
from engine.message import JobMessage
from engine.topology import dead_exchange

H_REASON = "x-lazarus-reason"
H_ERROR_TYPE = "x-lazarus-error-type"
H_ERROR_MESSAGE = "x-lazarus-error-message"
H_TRACEBACK = "x-lazarus-traceback"
H_WORKER = "x-lazarus-worker"
H_QUEUE = "x-lazarus-queue"
H_DIED_AT = "x-lazarus-died-at"
H_ATTEMPTS = "x-lazarus-attempts"


def dead_headers(
    *,
    reason: str,
    error: ErrorInfo | None,
    worker_id: str,
    queue: str,
    message: JobMessage | None,
) -> dict[str, Any]:
    """Headers that carry why and where a job died, next to its untouched body."""
    headers: dict[str, Any] = {
        H_REASON: reason,
        H_WORKER: worker_id,
        H_QUEUE: queue,
        H_DIED_AT: datetime.now(UTC).isoformat(),
    }
    if message is not None:
        headers[H_ATTEMPTS] = message.attempt + 1
    if error is not None:
        headers[H_ERROR_TYPE] = error.type
        headers[H_ERROR_MESSAGE] = error.message
        headers[H_TRACEBACK] = error.traceback
    return headers


async def publish_dead(broker: Broker, body: bytes, job_id: str, headers: dict[str, Any]) -> None:
    """Publish a dead letter and wait for its confirm; the caller acks the original after.

    Crash here (before the confirm): the original is redelivered and dies again; the
    recorder's key (job id, generation) keeps one row however many copies arrive.
    """
    await broker.publish(dead_exchange(broker.ns), "", body, headers, job_id)
