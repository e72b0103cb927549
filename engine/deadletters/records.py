"""What a dead letter is stored as, built the same way whoever stores it.

A worker stores the deaths it decides; the recorder stores what reaches the broker
unstored (the broker's own dead letters, deaths while PostgreSQL was down). Both
build the row from the same body and headers, so a row does not depend on its path.

Any producer in the vhost can publish to the recorder, headers included: a name taken
from a header is stored only if it can name a queue (see :func:`stored_queue`), else
the row says :data:`INVALID_NAME` and keeps the header's value among its headers.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from engine.errors import MessageError
from engine.message import (
    H_ATTEMPTS,
    H_DIED_AT,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_ORIGINAL_ID,
    H_QUEUE,
    H_REASON,
    H_TRACEBACK,
    H_WORKER,
    MAX_INT32,
    JobMessage,
    decode,
    fallback_job_id,
    is_queue_name,
    job_id_problem,
)
from engine.pg.errors import DB_UNAVAILABLE
from engine.pg.port import WorkerStore
from engine.pg.store import DeadRecord, pg_text

log = logging.getLogger("lazarus.deadletters")

# The queue of a dead letter whose body and header name none that is valid. Itself no
# valid queue name: nothing can be routed by it, and listings of queues skip it.
INVALID_NAME = "(invalid)"

# Header of a bare row that keeps a job id the row could not (see _bare).
# Texts in a B-tree index: an entry must fit in a third of a page (2,704 bytes), and 255
# characters are at most 1,020 bytes of UTF-8.
_INDEXED_TEXTS = ("job_type", "queue", "error_type")
_INDEXED_CHARS = 255
# Text columns of a dead letter; PostgreSQL text refuses NUL characters.
_TEXT_FIELDS = (
    "reason",
    "error_type",
    "error_message",
    "traceback",
    "worker",
    "queue",
    "job_type",
    "job_id",
)


def dead_record(
    body: bytes,
    message_id: str | None,
    headers: Mapping[str, Any],
    decoded: JobMessage | None = None,
) -> DeadRecord:
    """What to store for one dead letter, whether a worker or the broker killed it.

    ``decoded``: the body as the worker already decoded it, so it is not decoded twice.
    """
    job_id = fallback_job_id(body, message_id)
    message = decoded
    if message is None:
        try:
            message = decode(body, max_bytes=len(body) + 1, fallback_id=job_id)
        except MessageError:
            message = None
    reason = _text(headers.get(H_REASON))
    error_type = _text(headers.get(H_ERROR_TYPE))
    error_message = _text(headers.get(H_ERROR_MESSAGE))
    if not reason:  # dead-lettered by the broker itself (e.g. quorum delivery limit)
        death = _first_death(headers)
        reason = f"broker: {death.get('reason', 'unknown')}"
        error_type = "BrokerDeadLetter"
        error_message = (
            f"RabbitMQ dead-lettered the message from queue {death.get('queue', '?')!r} "
            f"({death.get('reason', 'unknown')}, count {death.get('count', '?')})"
        )
    died_at = _time(headers.get(H_DIED_AT)) or datetime.now(UTC)
    attempts = _int32(headers.get(H_ATTEMPTS))  # any publisher may set it to anything
    return DeadRecord(
        job_id=message.id if message else job_id,
        generation=message.generation if message else 0,
        job_type=message.type if message else "",
        queue=message.queue if message else stored_queue(body, headers.get(H_QUEUE)),
        payload=message.payload if message else None,
        body=body,
        headers=_plain({k: v for k, v in headers.items() if k != H_TRACEBACK}),
        attempts=attempts if attempts is not None else (message.attempt + 1 if message else 0),
        max_retries=message.max_retries if message else None,
        workflow_id=message.workflow.workflow_id if message and message.workflow else None,
        reason=reason,
        error_type=error_type or "Unknown",
        error_message=error_message,
        traceback=_text(headers.get(H_TRACEBACK)),
        checkpoint=message.checkpoint if message else None,
        enqueued_at=message.created_at if message else None,
        died_at=died_at,
        worker=_text(headers.get(H_WORKER)),
    )


def stored_queue(body: bytes, header: Any) -> str:
    """The queue of a dead letter whose body does not decode: the header's if it can name a
    queue, else the body's ``queue`` if that can; :data:`INVALID_NAME` if either named an
    unusable one (a forged header, 5,000 characters), "" if neither named any."""
    given = [_text(header)] if header is not None else []
    field = _body_field(body, "queue")
    if field is not None:
        given.append(field)
    for name in given:
        if isinstance(name, str) and is_queue_name(name):
            return name
    return INVALID_NAME if given else ""


def _body_field(body: bytes, name: str) -> Any:
    """Field ``name`` of a body that is a JSON object, else None."""
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return fields.get(name) if isinstance(fields, dict) else None


async def store_dead(store: WorkerStore, records: Sequence[DeadRecord]) -> int:
    """Insert a batch; returns rows added. Raises only for an outage (DB_UNAVAILABLE), or if
    a row fails even in its bare form (then the fault is not the row's).

    If PostgreSQL rejects the batch for any other reason (a NUL in a JSON string, a value
    too long for an index: SQLSTATE 54000, which is no DataError), the rows are stored one
    by one and a rejected one is kept bare (see :func:`_bare`): one row never holds back
    the others.
    """
    try:
        return await store.insert_dead(records)
    except DB_UNAVAILABLE:
        raise
    except Exception as exc:
        log.warning(
            "a batch of %d dead letters was rejected (%r); storing them one by one",
            len(records),
            exc,
        )
    stored = 0
    for record in records:
        try:
            stored += await store.insert_dead([record])
        except DB_UNAVAILABLE:
            raise
        except Exception as exc:
            log.warning(
                "dead letter of job %.100r generation %s rejected (%r); storing it bare",
                record.job_id,
                record.generation,
                exc,
            )
            stored += await store.insert_dead([_bare(record)])
    return stored


def _bare(record: DeadRecord) -> DeadRecord:
    """The row of a dead letter PostgreSQL rejected: raw body kept, JSON dropped, numbers out
    of their 32-bit columns replaced, NULs (which text refuses) removed, and the indexed
    texts cut to fit an index entry; a job id that cannot be one is replaced by a digest of
    it, the original kept in the row's headers, so it fits."""
    texts: dict[str, Any] = {name: pg_text(getattr(record, name)) for name in _TEXT_FIELDS}
    for name in _INDEXED_TEXTS:
        texts[name] = texts[name][:_INDEXED_CHARS]
    headers: dict[str, Any] = {}
    if job_id_problem(texts["job_id"]) is not None:
        headers[H_ORIGINAL_ID] = texts["job_id"]
        digest = hashlib.sha256(record.job_id.encode("utf-8", errors="surrogatepass"))
        texts["job_id"] = f"sha256:{digest.hexdigest()}"
    return replace(
        record,
        payload=None,
        headers=headers,
        checkpoint=None,
        attempts=_int32(record.attempts) or 0,
        max_retries=_int32(record.max_retries),
        generation=_int32(record.generation) or 0,
        **texts,
    )


def _int32(value: Any) -> int | None:
    """``value`` if it is a count a 32-bit column holds (0 to 2**31-1), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT32:
        return value
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes | bytearray) else str(value)


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(_text(value)) if value else None
    except ValueError:
        return None


def _first_death(headers: Mapping[str, Any]) -> dict[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return {k: _text(v) if isinstance(v, bytes) else v for k, v in deaths[0].items()}
    return {}


def _plain(value: Any) -> Any:
    """AMQP header values as JSON: bytes to text, datetimes to ISO strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return value.decode(errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)
