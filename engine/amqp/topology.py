"""Names and declarations of every exchange and queue of a namespace.

Names come from pure functions so tests, the README and other services agree::

    <ns>.work                 direct exchange; routing key = queue name
    <ns>.q.<queue>            work queue of <queue>
    <ns>.delay.<queue>.<ms>   holds retries and delayed jobs of <queue> for <ms>, then
                              dead-letters them back to <ns>.work with routing key <queue>
    <ns>.dead                 fanout exchange of every dead letter
    <ns>.dead.retained        bound to <ns>.dead: a copy of every dead letter for whoever watches
    <ns>.dead.record          fanout exchange of dead letters not yet in PostgreSQL; bound
                              to <ns>.dead (exchange to exchange), so they reach it too
    <ns>.dead.recorder        bound to <ns>.dead.record; read by the recorder into PostgreSQL
    <ns>.parked.<type>        jobs of a paused type, until a person resumes the type

A worker that stored a death itself publishes its copy to <ns>.dead: one queue.
A death not stored yet (no database, or PostgreSQL down) and whatever the broker
dead-letters by itself (the work queues' dead-letter exchange) go to <ns>.dead.record.
"""

from __future__ import annotations

import math
import time
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue, ExchangeType

from engine.errors import TopologyError
from engine.settings import QueueType

# Quorum work queues let the broker itself dead-letter a message that was delivered
# this many times without an ack: a backstop behind the engine's own redelivery count.
BROKER_DELIVERY_LIMIT = 20


def work_exchange(ns: str) -> str:
    return f"{ns}.work"


def work_queue(ns: str, queue: str) -> str:
    return f"{ns}.q.{queue}"


def dead_exchange(ns: str) -> str:
    return f"{ns}.dead"


def record_exchange(ns: str) -> str:
    return f"{ns}.dead.record"


def retained_queue(ns: str) -> str:
    return f"{ns}.dead.retained"


def recorder_queue(ns: str) -> str:
    return f"{ns}.dead.recorder"


def parked_queue(ns: str, job_type: str) -> str:
    return f"{ns}.parked.{job_type}"


def namespace_exchanges(ns: str) -> list[str]:
    """Every exchange of a namespace (to remove one whole)."""
    return [work_exchange(ns), dead_exchange(ns), record_exchange(ns)]


def dead_letter_queues(ns: str) -> list[str]:
    return [retained_queue(ns), recorder_queue(ns)]


def delay_tier_ms(seconds: float) -> int:
    """Round a retry backoff to two significant digits of milliseconds.

    Every distinct delay is a queue (all its messages share one TTL, so none waits
    behind a longer one); rounding keeps jittered backoffs from creating a queue
    per retry, at a cost of at most 5 % of the delay. Only for backoffs: a delay a
    person asks for goes through :func:`requested_delay_ms`.
    """
    ms = max(1, round(seconds * 1000))
    digits = math.floor(math.log10(ms))
    step = 10 ** max(0, digits - 1)
    return int(round(ms / step) * step)


def requested_delay_ms(seconds: float) -> int:
    """A delay a person asked for (enqueue with a delay or a run-at time), in whole
    seconds rounded up: never early, at most a second late.

    Unlike a backoff it is not tiered (5 % of a day is over an hour); whole seconds
    still bound the delay queues to one per distinct second.
    """
    ms = max(1, math.ceil(seconds * 1000 - 1e-6))  # less than a nanosecond is float noise
    return -(-ms // 1000) * 1000


def delay_queue(ns: str, queue: str, delay_ms: int) -> str:
    return f"{ns}.delay.{queue}.{delay_ms}"


def queue_type_arguments(queue_type: QueueType) -> dict[str, Any]:
    """Arguments of a plain durable queue of the configured type."""
    return {"x-queue-type": queue_type.value}


def work_queue_arguments(ns: str, queue_type: QueueType) -> dict[str, Any]:
    args = queue_type_arguments(queue_type) | {"x-dead-letter-exchange": record_exchange(ns)}
    if queue_type is QueueType.QUORUM:
        args["x-delivery-limit"] = BROKER_DELIVERY_LIMIT
    return args


def delay_queue_arguments(
    ns: str, queue: str, delay_ms: int, queue_type: QueueType
) -> dict[str, Any]:
    """A delay queue expires when unused for a while, so one-off delays leave nothing behind.

    The TTL is per queue, never per message: a per-message TTL only expires the head
    of a queue, so a 1 s retry would wait behind a 1 h one.
    """
    args = queue_type_arguments(queue_type) | {
        "x-message-ttl": delay_ms,
        "x-dead-letter-exchange": work_exchange(ns),
        "x-dead-letter-routing-key": queue,
        "x-expires": delay_ms + delay_expiry_margin_ms(delay_ms),
    }
    if queue_type is QueueType.QUORUM:
        # at-least-once dead-lettering: the move back to the work queue is confirmed
        # internally instead of fire-and-forget; it requires reject-publish overflow.
        args["x-dead-letter-strategy"] = "at-least-once"
        args["x-overflow"] = "reject-publish"
    return args


def delay_expiry_margin_ms(delay_ms: int) -> int:
    """How long past its TTL an idle delay queue lives: its last message must leave first."""
    return max(60_000, delay_ms)


async def declare_queue(
    channel: AbstractChannel, name: str, arguments: dict[str, Any]
) -> AbstractQueue:
    """Declare a durable queue; name the queue and the difference if it exists otherwise."""
    try:
        return await channel.declare_queue(name, durable=True, arguments=arguments)
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise TopologyError(
            f"queue {name!r} exists with other arguments than {arguments}: {exc.args[0]}"
        ) from None


class Topology:
    """Declares the namespace's exchanges and queues, each once per process (delay queues
    again before their expiry margin runs out)."""

    def __init__(self, ns: str, queue_type: QueueType) -> None:
        self.ns = ns
        self.queue_type = queue_type
        self._work_queues: set[str] = set()
        self._parked_queues: set[str] = set()
        self._delay_declared: dict[tuple[str, int], float] = {}
        self._arguments: dict[str, dict[str, Any]] = {}  # queue name -> its declared arguments
        self._base_done = False

    async def _declare(
        self, channel: AbstractChannel, name: str, arguments: dict[str, Any]
    ) -> AbstractQueue:
        queue = await declare_queue(channel, name, arguments)
        self._arguments[name] = arguments
        return queue

    def arguments_of(self, name: str) -> dict[str, Any] | None:
        """The arguments this process declared queue ``name`` with (None if it did not):
        a consumer channel redeclares its queue with them, for the robust channel's restore."""
        return self._arguments.get(name)

    async def declare_base(self, channel: AbstractChannel) -> AbstractExchange:
        """Declare the work and dead-letter exchanges and the dead-letter queues."""
        work = await channel.declare_exchange(
            work_exchange(self.ns), ExchangeType.DIRECT, durable=True
        )
        if not self._base_done:
            dead = await channel.declare_exchange(
                dead_exchange(self.ns), ExchangeType.FANOUT, durable=True
            )
            record = await channel.declare_exchange(
                record_exchange(self.ns), ExchangeType.FANOUT, durable=True
            )
            await dead.bind(record, routing_key="")
            arguments = queue_type_arguments(self.queue_type)
            retained = await self._declare(channel, retained_queue(self.ns), arguments)
            await retained.bind(dead, routing_key="")
            recorder = await self._declare(channel, recorder_queue(self.ns), arguments)
            await recorder.bind(record, routing_key="")
            await recorder.unbind(dead, routing_key="")  # an earlier layout bound it there
            self._base_done = True
        return work

    async def declare_work_queue(self, channel: AbstractChannel, queue: str) -> AbstractQueue:
        await self.declare_base(channel)
        q = await self._declare(
            channel, work_queue(self.ns, queue), work_queue_arguments(self.ns, self.queue_type)
        )
        await q.bind(work_exchange(self.ns), routing_key=queue)
        self._work_queues.add(queue)
        return q

    async def declare_parked_queue(self, channel: AbstractChannel, job_type: str) -> str:
        """The parked queue of ``job_type``, declared once per process; no TTL, no expiry."""
        name = parked_queue(self.ns, job_type)
        if name not in self._parked_queues:
            await self._declare(channel, name, queue_type_arguments(self.queue_type))
            self._parked_queues.add(name)
        return name

    def knows_work_queue(self, queue: str) -> bool:
        return queue in self._work_queues

    async def ensure_delay_queue(self, channel: AbstractChannel, queue: str, delay_ms: int) -> str:
        name = delay_queue(self.ns, queue, delay_ms)
        key = (queue, delay_ms)
        now = time.monotonic()
        # Redeclaring resets the expiry timer; half the margin leaves room for in-flight TTLs.
        if now - self._delay_declared.get(key, -math.inf) > delay_expiry_margin_ms(delay_ms) / 2000:
            await self._declare(
                channel, name, delay_queue_arguments(self.ns, queue, delay_ms, self.queue_type)
            )
            self._delay_declared[key] = now
        return name


async def passive_queue(channel: AbstractChannel, name: str) -> AbstractQueue | None:
    """The queue if it exists (with its depth and consumer count), else None."""
    try:
        return await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return None
