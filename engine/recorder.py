"""The recorder: moves dead letters from ``<ns>.dead.recorder`` into PostgreSQL, once each.

It stores a batch in one statement (``ON CONFLICT (job_id, generation) DO NOTHING``),
commits, then acks the batch. While PostgreSQL is down it acks nothing: the queue
holds the backlog and the recorder retries with backoff, saying so in the log.
Crash after the commit and before the ack: the batch is redelivered and ignored.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from engine import metrics
from engine.broker import Broker
from engine.deadletter import (
    H_ATTEMPTS,
    H_DIED_AT,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_QUEUE,
    H_REASON,
    H_TRACEBACK,
    H_WORKER,
)
from engine.errors import MessageError
from engine.executor import fallback_job_id
from engine.message import decode
from engine.store import DeadRecord, Store
from engine.topology import declare_queue, queue_type_arguments, recorder_queue

log = logging.getLogger("lazarus.recorder")


def record_from_delivery(delivery: AbstractIncomingMessage) -> DeadRecord:
    """What to store for one dead letter, whether it came from a worker or from the broker."""
    headers = dict(delivery.headers or {})
    body = delivery.body
    job_id = fallback_job_id(body, delivery.message_id)
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
    attempts = headers.get(H_ATTEMPTS)
    return DeadRecord(
        job_id=message.id if message else job_id,
        generation=message.generation if message else 0,
        job_type=message.type if message else "",
        queue=message.queue if message else _text(headers.get(H_QUEUE)),
        payload=message.payload if message else None,
        body=body,
        headers=_plain({k: v for k, v in headers.items() if k != H_TRACEBACK}),
        attempts=attempts if isinstance(attempts, int) else (message.attempt + 1 if message else 0),
        max_retries=message.max_retries if message else None,
        reason=reason,
        error_type=error_type or "Unknown",
        error_message=error_message,
        traceback=_text(headers.get(H_TRACEBACK)),
        checkpoint=message.checkpoint if message else None,
        enqueued_at=message.created_at if message else None,
        died_at=died_at,
        worker=_text(headers.get(H_WORKER)),
    )


class Recorder:
    """Consumes the recorder queue in batches of up to ``batch_size``."""

    def __init__(
        self, broker: Broker, store: Store, *, batch_size: int = 500, linger: float = 0.05
    ) -> None:
        self.broker = broker
        self.store = store
        self.batch_size = batch_size
        self.linger = linger
        self.recorded = 0
        self._pending: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._channel: AbstractChannel | None = None
        self._task: asyncio.Task[None] | None = None
        self._consumer_tag: str | None = None

    async def start(self) -> None:
        self._channel = await self.broker.connection.channel()
        await self._channel.set_qos(prefetch_count=self.batch_size * 2)
        # Declared on this channel, not looked up: a robust channel restores only the queues
        # declared on it (and their consumers) after a reconnect.
        queue = await declare_queue(
            self._channel,
            recorder_queue(self.broker.ns),
            queue_type_arguments(self.broker.settings.queue_type),
        )
        self._consumer_tag = await queue.consume(self._pending.put)
        self._task = asyncio.create_task(self._run(), name="lazarus-recorder")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()  # unacked dead letters go back to the queue

    async def _run(self) -> None:
        while True:
            await self._store(await self._next_batch())

    async def _next_batch(self) -> list[AbstractIncomingMessage]:
        """Up to ``batch_size`` deliveries, waiting at most ``linger`` for more than the first.

        Deliveries already queued are taken without a timer: a wait_for per delivery cost
        more than the insert under a burst.
        """
        loop = asyncio.get_running_loop()
        batch = [await self._pending.get()]
        deadline = loop.time() + self.linger
        while len(batch) < self.batch_size:
            if not self._pending.empty():
                batch.append(self._pending.get_nowait())
                continue
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._pending.get(), timeout))
            except TimeoutError:
                break
        return batch

    async def _store(self, batch: list[AbstractIncomingMessage]) -> None:
        records = [record_from_delivery(d) for d in batch]
        delay = 0.5
        while True:
            try:
                stored = await self._insert(records)
                self.recorded += stored
                metrics.DEAD_LETTERS_RECORDED.inc(stored)
                break
            except (
                OSError,
                asyncpg.PostgresConnectionError,
                asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError,
            ) as exc:
                log.warning(
                    "PostgreSQL unavailable, %d dead letters wait in RabbitMQ unacked; "
                    "retrying in %.1f s: %r",
                    len(batch),
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        # One multiple-ack covers the batch: every earlier delivery on this channel is in it.
        last = max(batch, key=lambda d: d.delivery_tag or 0)
        try:
            await last.ack(multiple=True)
        except Exception as exc:  # the channel died: redelivery, and the insert ignores them
            log.warning(
                "ack of %d dead letters failed (%r); they will be redelivered", len(batch), exc
            )

    async def _insert(self, records: list[DeadRecord]) -> int:
        """Insert a batch; if PostgreSQL rejects a value (say a NUL in a JSON string), store the
        rows one by one and keep a rejected one with its raw body only."""
        try:
            return await self.store.insert_dead(records)
        except asyncpg.DataError as exc:
            log.warning("a batch of dead letters was rejected (%r); storing them one by one", exc)
        stored = 0
        for record in records:
            try:
                stored += await self.store.insert_dead([record])
            except asyncpg.DataError:
                bare = replace(record, payload=None, headers={}, checkpoint=None)
                stored += await self.store.insert_dead([bare])
        return stored


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


def _first_death(headers: dict[str, Any]) -> dict[str, Any]:
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
