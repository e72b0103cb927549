"""Enqueue jobs: returns only once RabbitMQ has confirmed the message."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from engine.amqp.broker import Broker
from engine.amqp.port import BrokerPort, Outgoing
from engine.amqp.topology import delay_tier_ms, requested_delay_ms, work_exchange, work_queue
from engine.errors import LazarusError, PublishFailed
from engine.message import (
    MAX_ATTEMPTS,
    JobMessage,
    check_queue_name,
    encode,
    job_id_problem,
    new_job_id,
    now_utc,
)
from engine.outbox.relay import drain
from engine.pg.errors import DB_ERROR
from engine.pg.port import Enqueued, JobIdTaken, UniqueJob, UniqueJobStore
from engine.registry import registered
from engine.settings import Settings, load_settings

__all__ = ["Client", "Enqueued", "JobIdTaken", "unique_key_problem"]

log = logging.getLogger("lazarus.client")


class Client:
    """Publishes job messages. Use as ``async with Client() as client``."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        broker: BrokerPort | None = None,
        routes: Mapping[str, str] | None = None,
        store: UniqueJobStore | None = None,
    ) -> None:
        """``routes`` (job type -> queue), for types whose handlers live elsewhere: what the
        workers' registry says (``engine.pg.workers.known_routes``), as ``lazarus enqueue``
        passes it. ``store`` (connected by the caller) is needed by
        :meth:`enqueue_if_absent` only."""
        self.settings = settings or load_settings()
        self.broker: BrokerPort = broker or Broker(self.settings, name="lazarus-client")
        self._owns_broker = broker is None
        self.routes = dict(routes or {})
        self.store = store

    async def __aenter__(self) -> Client:
        if self._owns_broker:
            await self.broker.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._owns_broker:
            await self.broker.close()

    async def declare_queue(self, queue: str = "default") -> None:
        """Create the work queue so jobs can be published to it before any worker starts."""
        await self.broker.declare_work_queue(check_queue_name(queue))

    async def enqueue(
        self,
        job_type: str,
        payload: Any = None,
        *,
        queue: str | None = None,
        max_retries: int | None = None,
        delay: float | None = None,
        at: datetime | None = None,
        job_id: str | None = None,
        suspend_on_failure: bool | None = None,
    ) -> str:
        """Publish one job and return its id once the broker has confirmed it.

        ``queue`` defaults to the queue its handler declares when that handler is
        registered in this process, else to the client's ``routes``, else ``default``.
        The job runs no earlier than ``delay`` seconds from now, or than ``at``
        (timezone-aware; a time past runs it now), and at most a second later;
        ValueError if both are given. Raises PublishFailed if the queue does not exist
        (declare it or start a worker).
        """
        wait = seconds_to_wait(delay, at)
        message = build_message(
            job_type,
            payload,
            self.queue_for(job_type, queue),
            max_retries,
            job_id,
            suspend_on_failure,
        )
        delay_ms = requested_delay_ms(wait) if wait > 0 else 0
        await self.broker.publish(*await self._route(message, delay_ms))
        return message.id

    async def enqueue_if_absent(
        self,
        job_type: str,
        payload: Any = None,
        *,
        key: str,
        queue: str | None = None,
        max_retries: int | None = None,
        delay: float | None = None,
        at: datetime | None = None,
        job_id: str | None = None,
        suspend_on_failure: bool | None = None,
    ) -> Enqueued:
        """Enqueue a job unless one under unique ``key`` is not over for good.

        In one transaction the job's row is inserted, pending and holding ``key``, with its
        message in the outbox; if a job holds ``key`` (pending, running, retrying,
        suspended or dead) nothing is inserted and that job is the answer
        (``created=False`` and its state). The key is free again once its job succeeds or
        is cancelled. A created job is published at once (the outbox is drained after the
        commit); if that fails it stays staged and the relay publishes it.

        The options are :meth:`enqueue`'s. ValueError for a bad key, and for a job type
        registered here with ``track=False`` (its state is never recorded, so it would hold
        its key forever); a type whose handler is not registered here is taken to be
        tracked. JobIdTaken if ``job_id`` belongs to a job outside the key.
        """
        if self.store is None:
            raise RuntimeError("enqueue_if_absent needs the store: Client(settings, store=...)")
        if problem := unique_key_problem(key):
            raise ValueError(f"unique key {key[:64]!r}: {problem}")
        handler = registered().get(job_type)
        if handler is not None and not handler.track:
            raise ValueError(
                f"job type {job_type!r} is registered with track=False: its state is never "
                f"recorded, so it would hold unique key {key[:64]!r} forever"
            )
        wait = seconds_to_wait(delay, at)
        message = build_message(
            job_type,
            payload,
            self.queue_for(job_type, queue),
            max_retries,
            job_id,
            suspend_on_failure,
        )
        answer = await self.store.enqueue_unique(
            UniqueJob(
                unique_key=key,
                job_id=message.id,
                job_type=message.type,
                queue=message.queue,
                payload=message.payload,
                max_retries=message.max_retries,
                suspend_on_failure=message.suspend_on_failure,
                created_at=message.created_at,
                body=encode(message),
                run_at=message.created_at + timedelta(seconds=wait) if wait > 0 else None,
            )
        )
        if answer.created:
            try:
                await drain(self.store, self.broker)
            except (LazarusError, *DB_ERROR) as exc:
                log.warning("job %s is staged; the relay will publish it: %r", message.id, exc)
        return answer

    async def enqueue_many(
        self, jobs: Iterable[tuple[str, Any]], *, queue: str | None = None, in_flight: int = 1000
    ) -> list[str]:
        """Publish many ``(job_type, payload)`` jobs with pipelined confirms; return their ids.

        Each goes to ``queue`` if given, else to its type's queue as for :meth:`enqueue`.
        """
        messages = [
            build_message(t, p, self.queue_for(t, queue), None, None, None) for t, p in jobs
        ]
        exchange = work_exchange(self.settings.namespace)
        outgoing: list[Outgoing] = [(exchange, m.queue, encode(m), None, m.id) for m in messages]
        await self.broker.publish_many(outgoing, in_flight=in_flight)
        return [m.id for m in messages]

    def queue_for(self, job_type: str, queue: str | None) -> str:
        return queue_for(job_type, queue, self.routes)

    async def publish_message(self, message: JobMessage, delay: float = 0) -> None:
        """Publish a prepared message (a retry or a requeue) and wait for its confirm;
        ``delay`` is a backoff, rounded to its delay tier."""
        wait = seconds_to_wait(delay, None)
        await self.broker.publish(*await self._route(message, delay_tier_ms(wait) if wait else 0))

    async def _route(self, message: JobMessage, delay_ms: int) -> Outgoing:
        body = encode(message)
        if delay_ms > 0:
            await self._require_queue(message.queue)
            exchange, key = await self.broker.delay_route(message.queue, delay_ms)
        else:
            exchange, key = work_exchange(self.settings.namespace), message.queue
        return exchange, key, body, None, message.id

    async def _require_queue(self, queue: str) -> None:
        """Raise PublishFailed unless ``queue`` exists: a delayed copy that finds no queue
        when it expires is dropped by RabbitMQ, so it is checked before it is published."""
        if self.broker.knows_work_queue(queue):
            return
        if await self.broker.queue_depth(work_queue(self.settings.namespace, queue)) is None:
            raise PublishFailed(
                f"queue {queue!r} is not declared: start a worker on it or call declare_queue"
            )


def seconds_to_wait(delay: float | None, at: datetime | None) -> float:
    """Seconds until a job may run, from a delay or a run-at time (0: now).

    ValueError if both are given, if ``delay`` is negative or not finite, or if ``at``
    has no timezone (a naive time is ambiguous between hosts).
    """
    if delay is not None and at is not None:
        raise ValueError(f"give delay or at, not both (delay={delay!r}, at={at!r})")
    if at is not None:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"at must be timezone-aware, got {at!r}")
        return max(0.0, (at - now_utc()).total_seconds())
    if delay is None:
        return 0.0
    if not math.isfinite(delay) or delay < 0:
        raise ValueError(f"delay must be a finite number of seconds, not negative, got {delay}")
    return float(delay)


def queue_for(job_type: str, queue: str | None, routes: Mapping[str, str] | None = None) -> str:
    """The queue given, else the one the job type's handler declares here, else the one
    ``routes`` (the workers' registry) names, else ``default``."""
    if queue is not None:
        return queue
    handler = registered().get(job_type)
    if handler is not None:
        return handler.queue
    return (routes or {}).get(job_type, "default")


def unique_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a unique key (None if it can): the bounds of a job id (at most
    255 bytes of UTF-8, no control characters), and not empty."""
    if not key:
        return "is empty"
    return job_id_problem(key)


def build_message(
    job_type: str,
    payload: Any,
    queue: str,
    max_retries: int | None,
    job_id: str | None,
    suspend_on_failure: bool | None,
) -> JobMessage:
    if max_retries is not None and not 0 <= max_retries <= MAX_ATTEMPTS:
        raise ValueError(f"max_retries must be 0 to {MAX_ATTEMPTS}, got {max_retries}")
    if job_id and (problem := job_id_problem(job_id)):  # refused here, not at the worker
        raise ValueError(f"job id {job_id[:64]!r}: {problem}")
    return JobMessage(
        type=job_type,
        payload=payload,
        id=job_id or new_job_id(),
        queue=check_queue_name(queue),
        max_retries=max_retries,
        suspend_on_failure=suspend_on_failure,
    )
