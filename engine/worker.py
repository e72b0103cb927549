"""The consume loop: take deliveries, run them, act on their outcome, stop cleanly.

Rules the loop keeps:
- an original is acked only after its successor (retry copy, dead letter,
  redelivery copy) is confirmed by the broker; a failed publish means no ack;
- a broker retry waits in a delay queue, never in this process: the job holds no slot;
- a message delivered again after its worker died is counted in a header, and
  dead-lettered as a crash loop past ``max_redeliveries``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from engine.broker import Broker
from engine.deadletter import dead_headers, publish_dead
from engine.errors import PublishFailed
from engine.executor import DeadReason, ErrorInfo, Executor, Outcome, fallback_job_id
from engine.message import encode
from engine.settings import Settings
from engine.states import Verdict
from engine.topology import delay_tier_ms, work_exchange, work_queue

log = logging.getLogger("lazarus.worker")

H_REDELIVERIES = "x-lazarus-redeliveries"

# After a failed publish, wait this long before handing the message back, so a broker
# that refuses publishes does not turn into a hot redelivery loop.
NACK_BACKOFF = 1.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Consumes the given queues with at most ``concurrency`` jobs running per queue."""

    def __init__(
        self,
        settings: Settings,
        queues: list[str],
        *,
        concurrency: int = 32,
        worker_id: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.settings = settings
        self.queues = queues
        self.concurrency = concurrency
        self.worker_id = worker_id or default_worker_id()
        self.broker = Broker(settings, name=f"lazarus-worker {self.worker_id}")
        self.executor = Executor(self.worker_id, max_message_bytes=settings.max_message_bytes)
        self._consume_channel: AbstractChannel | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self.processed = 0

    async def start(self) -> None:
        """Connect, declare the queues and start consuming."""
        await self.broker.connect()
        self._consume_channel = await self.broker.connection.channel()
        await self._consume_channel.set_qos(prefetch_count=self.concurrency)
        for name in self.queues:
            await self.broker.declare_work_queue(name)
            queue = await self._consume_channel.get_queue(
                work_queue(self.settings.namespace, name), ensure=False
            )
            tag = await queue.consume(self._on_message)
            self._consumers.append((queue, tag))
        log.info("worker %s consuming %s", self.worker_id, ", ".join(self.queues))

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking jobs; give in-flight ones ``grace`` seconds; leave the rest to redelivery."""
        for queue, tag in self._consumers:
            try:
                await queue.cancel(tag)
            except Exception as exc:  # the channel may already be gone
                log.warning("cancel of consumer %s failed: %r", tag, exc)
        self._consumers.clear()
        pending = set(self._in_flight)
        if pending:
            wait = self.settings.shutdown_grace if grace is None else grace
            log.info("waiting up to %.1f s for %d in-flight jobs", wait, len(pending))
            _, still_running = await asyncio.wait(pending, timeout=wait)
            for task in still_running:
                task.cancel()
            if still_running:
                log.warning("%d jobs left for redelivery", len(still_running))
                await asyncio.wait(still_running, timeout=5)
        await self.broker.close()

    async def _on_message(self, delivery: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            await self._handle(delivery)
        except asyncio.CancelledError:
            # Shutdown or suspension: no ack; the broker redelivers the job.
            raise
        except Exception:
            log.exception("unexpected failure handling a delivery; leaving it to redelivery")
            await _nack(delivery)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def _handle(self, delivery: AbstractIncomingMessage) -> None:
        if delivery.redelivered and await self._divert_redelivery(delivery):
            return
        outcome = await self.executor.execute(delivery.body, delivery.message_id)
        await self._settle(delivery, outcome)
        self.processed += 1

    async def _divert_redelivery(self, delivery: AbstractIncomingMessage) -> bool:
        """Count a redelivery in a fresh copy, or dead-letter a crash loop. True if handled here.

        The broker's own redelivered flag cannot count; the body must stay untouched
        (its attempt belongs to the retry policy), so the count travels in a header.
        """
        previous = (delivery.headers or {}).get(H_REDELIVERIES, 0)
        count = (previous if isinstance(previous, int) else 0) + 1
        job_id = fallback_job_id(delivery.body, delivery.message_id)
        if count > self.settings.max_redeliveries:
            error = ErrorInfo(
                "CrashLoop",
                f"delivered {count} times without finishing; the worker died or lost its "
                "connection each time "
                f"(limit LAZARUS_MAX_REDELIVERIES={self.settings.max_redeliveries})",
                "",
            )
            await self._settle(
                delivery, Outcome(Verdict.DEAD, None, job_id, error, DeadReason.CRASH_LOOP)
            )
            return True
        headers = dict(delivery.headers or {})
        headers[H_REDELIVERIES] = count
        try:
            await self.broker.publish(
                work_exchange(self.settings.namespace),
                self._queue_of(delivery),
                delivery.body,
                headers,
                delivery.message_id,
            )
        except PublishFailed as exc:
            log.warning("could not republish redelivered job %s: %s", job_id, exc)
            await _nack(delivery, backoff=NACK_BACKOFF)
            return True
        await _ack(delivery)
        return True

    def _queue_of(self, delivery: AbstractIncomingMessage) -> str:
        prefix = f"{self.settings.namespace}.q."
        routing_key = delivery.routing_key or ""
        if routing_key and not routing_key.startswith(prefix):
            return routing_key
        return routing_key.removeprefix(prefix) or self.queues[0]

    async def _settle(self, delivery: AbstractIncomingMessage, outcome: Outcome) -> None:
        """Carry out an outcome: publish its successor (confirmed), then ack."""
        try:
            if outcome.verdict is Verdict.RETRY:
                assert outcome.message is not None
                retry = outcome.message.next_attempt()
                exchange, key = await self.broker.delay_route(
                    retry.queue, delay_tier_ms(outcome.delay)
                )
                await self.broker.publish(exchange, key, encode(retry), None, retry.id)
                log.info(
                    "job %s (%s) failed attempt %d, retrying in %.1f s: %s",
                    retry.id,
                    retry.type,
                    retry.attempt,
                    outcome.delay,
                    outcome.error.message if outcome.error else "",
                )
            elif outcome.verdict is Verdict.DEAD:
                message = outcome.message
                headers = dead_headers(
                    reason=outcome.reason or DeadReason.EXHAUSTED,
                    error=outcome.error,
                    worker_id=self.worker_id,
                    queue=message.queue if message else self._queue_of(delivery),
                    message=message,
                )
                await publish_dead(self.broker, delivery.body, outcome.job_id, headers)
                log.warning(
                    "job %s dead (%s): %s",
                    outcome.job_id,
                    outcome.reason,
                    outcome.error.message if outcome.error else "",
                )
        except PublishFailed as exc:
            log.error(
                "job %s: successor not confirmed, leaving it to redelivery: %s", outcome.job_id, exc
            )
            await _nack(delivery, backoff=NACK_BACKOFF)
            return
        await _ack(delivery)


async def _ack(delivery: AbstractIncomingMessage) -> None:
    try:
        await delivery.ack()
    except Exception as exc:  # channel gone: the broker redelivers, the redelivery path copes
        log.warning("ack failed (%r); the message will be redelivered", exc)


async def _nack(delivery: AbstractIncomingMessage, backoff: float = 0.0) -> None:
    if backoff:
        await asyncio.sleep(backoff)
    try:
        await delivery.nack(requeue=True)
    except Exception as exc:
        log.warning("nack failed (%r); the message will be redelivered", exc)
