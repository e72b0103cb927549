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
    H_ATTEMPTS,
    H_DIED_AT,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_QUEUE,
    H_REASON,
    H_TRACEBACK,
    H_WORKER,
    JobMessage,
)
from engine.outcome import ErrorInfo

# Headers travel in one AMQP frame (frame_max is 128 KiB by default): a huge error text
# would make every publish of the copy fail. Past these bounds the text is cut, saying so.
MAX_ERROR_TYPE = 255
MAX_ERROR_MESSAGE = 8_192
MAX_TRACEBACK = 32_768
CUT = " [...cut: {n} more characters]"


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
