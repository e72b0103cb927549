"""The dead-letter protocol, with its crash points in one place.

A dying job is stored (by a worker with a database), then published with a confirm
(the original body untouched, the error in ``x-lazarus-*`` headers, the job id as
message id), and only then acked. A stored death goes to ``<ns>.dead`` and its
retained queue; one not stored goes to ``<ns>.dead.record``, which feeds the
recorder's queue and ``<ns>.dead`` both. Rows are keyed by job id and generation,
so a death stored twice is one row. See docs/dead-letters.md for what a crash at
each step leaves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.amqp.port import BrokerPort
from engine.amqp.topology import dead_exchange, record_exchange
from engine.message import (
    CUT,
    H_ATTEMPTS,
    H_DIED_AT,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_QUEUE,
    H_REASON,
    H_TRACEBACK,
    H_WORKER,
    MAX_ERROR_MESSAGE,
    MAX_ERROR_TYPE,
    MAX_TRACEBACK,
    JobMessage,
    bounded,
)
from engine.outcome import ErrorInfo

__all__ = [
    "CUT",
    "MAX_ERROR_MESSAGE",
    "MAX_ERROR_TYPE",
    "MAX_TRACEBACK",
    "bounded",
    "dead_headers",
    "publish_dead",
]


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
        headers[H_ERROR_TYPE] = bounded(error.type, MAX_ERROR_TYPE)
        headers[H_ERROR_MESSAGE] = bounded(error.message, MAX_ERROR_MESSAGE)
        headers[H_TRACEBACK] = bounded(error.traceback, MAX_TRACEBACK, keep_end=True)
    return headers


async def publish_dead(
    broker: BrokerPort, body: bytes, job_id: str, headers: dict[str, Any], *, stored: bool
) -> None:
    """Publish a dead letter and wait for its confirm; the caller acks the original after.

    ``stored``: the row is committed already, so the recorder need not see this copy.
    Crash here (before the confirm): the original is redelivered; a stored generation is
    published again without running (engine.worker.redelivery), an unstored one dies again, and
    the key (job id, generation) keeps one row however many copies arrive.
    """
    exchange = dead_exchange(broker.ns) if stored else record_exchange(broker.ns)
    await broker.publish(exchange, "", body, headers, job_id)
