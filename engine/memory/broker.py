"""A broker in memory, for tests: the rules of RabbitMQ the engine relies on, and no more.

What it keeps, as RabbitMQ does (tests/contract/test_broker.py runs the same tests
against both):

- the namespace's exchanges and queues, named and declared with the arguments of
  engine.amqp.topology: the direct work exchange, the fanout dead-letter exchanges and
  the exchange-to-exchange binding of ``<ns>.dead.record`` to ``<ns>.dead``; a queue
  declared again with other arguments raises TopologyError;
- ``mandatory`` publishes with confirms: PublishFailed when no queue takes a message,
  the exchange is missing, or pamqp cannot encode it (its headers go through pamqp's
  encoder and decoder, so deliveries carry what RabbitMQ would hand back);
- per-queue TTLs on a :class:`VirtualClock`: an expired message is dead-lettered with
  an ``x-death`` entry (and ``x-first-death-*``, as RabbitMQ 3.10 stamps them) to the
  queue's dead-letter exchange; the work queues dead-letter rejected messages to
  ``<ns>.dead.record``, and a quorum queue the ones handed back more than its
  ``x-delivery-limit`` times; what a dead-letter exchange cannot route is ``dropped``;
- a quorum queue's ``x-delivery-count`` header, as 3.10 sets it: on every
  ``basic.get``, and on a consumer's delivery once the message came back;
- deliveries: each callback in a task of its own, a prefetch per consumer, tags
  ascending per channel, multiple acks, ``redelivered`` on what comes back; an ack the
  channel cannot match closes it and is kept in ``protocol_errors``;
- ``basic.get`` and queue depths; fault hooks :meth:`InMemoryBroker.refuse` and
  :meth:`InMemoryBroker.lose_confirm`.

What it skips: connection recovery, ``x-expires``, priorities, the consumer timeout,
persistence and flow control.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pamqp import decode as amqp_decode
from pamqp import encode as amqp_encode

from engine.amqp.broker import fitting_message_id
from engine.amqp.port import BrokerPort, Delivery, Outgoing
from engine.amqp.topology import (
    dead_exchange,
    delay_queue,
    delay_queue_arguments,
    parked_queue,
    queue_type_arguments,
    record_exchange,
    recorder_queue,
    retained_queue,
    work_exchange,
    work_queue,
    work_queue_arguments,
)
from engine.errors import PublishFailed, TopologyError
from engine.memory.channels import (
    ChannelClosed,
    MemoryChannel,
    MemoryConsumers,
    MemoryReader,
    _Consumer,
)
from engine.memory.clock import VirtualClock
from engine.message import check_queue_name
from engine.settings import QueueType, Settings

__all__ = ["ChannelClosed", "Dropped", "InMemoryBroker", "Published", "VirtualClock"]

log = logging.getLogger("lazarus.memory")

DIRECT, FANOUT = "direct", "fanout"


@dataclass(frozen=True, slots=True)
class Published:
    """One publish as the broker took it (what the fault hooks' predicates see)."""

    exchange: str
    routing_key: str
    body: bytes
    headers: Mapping[str, Any]
    message_id: str | None


@dataclass(frozen=True, slots=True)
class Dropped:
    """A message the broker discarded: dead-lettered where nothing took it, or rejected
    from a queue without a dead-letter exchange."""

    queue: str
    reason: str
    body: bytes
    message_id: str | None


@dataclass(eq=False)
class _Message:
    body: bytes
    headers: bytes  # an encoded AMQP field table: every delivery decodes a fresh copy
    message_id: str | None
    exchange: str
    routing_key: str
    redelivered: bool = False
    returns: int = 0  # handed back unacked (a quorum queue's delivery count)
    due: float | None = None  # when its queue's TTL expires it (virtual seconds)


@dataclass(eq=False)
class _Queue:
    name: str
    arguments: dict[str, Any]
    ready: deque[_Message] = field(default_factory=deque)
    consumers: list[_Consumer] = field(default_factory=list, repr=False)

    @property
    def ttl(self) -> float | None:
        ms = self.arguments.get("x-message-ttl")
        return None if ms is None else ms / 1000

    @property
    def quorum(self) -> bool:
        return bool(self.arguments.get("x-queue-type") == QueueType.QUORUM.value)

    @property
    def delivery_limit(self) -> int | None:
        if not self.quorum:
            return None
        limit = self.arguments.get("x-delivery-limit")
        return limit if isinstance(limit, int) else None


@dataclass(eq=False)
class _Exchange:
    name: str
    kind: str
    # (destination is an exchange, destination name, routing key)
    bindings: set[tuple[bool, str, str]] = field(default_factory=set)


def _encode_headers(headers: Mapping[str, Any] | None) -> bytes:
    return amqp_encode.field_table(dict(headers) if headers else {})


def _decode_headers(raw: bytes) -> dict[str, Any]:
    return dict(amqp_decode.field_table(raw)[1])


class InMemoryBroker:
    """The broker port in memory (see the module docstring for the rules it keeps).

    One instance is the whole broker, shared by every part of a test (worker, client,
    recorder): give it to them, ``Worker(settings, queues, broker=broker)``.
    """

    def __init__(self, settings: Settings, *, clock: VirtualClock | None = None) -> None:
        self.settings = settings
        self.clock = clock or VirtualClock()
        self.clock.attach(self)
        self.protocol_errors: list[str] = []
        self.dropped: list[Dropped] = []
        self.callback_errors: list[BaseException] = []
        self._exchanges: dict[str, _Exchange] = {}
        self._queues: dict[str, _Queue] = {}
        self._channels: list[MemoryChannel] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._work_queues: set[str] = set()
        self._refusals: list[Callable[[Published], bool]] = []
        self._lost_confirms: list[Callable[[Published], bool]] = []
        self._connected = False

    @property
    def ns(self) -> str:
        return self.settings.namespace

    # -- the port: connection and topology -------------------------------------------

    async def connect(self) -> None:
        self._connected = True
        self._declare_base()
        await asyncio.sleep(0)

    async def close(self) -> None:
        """Close every channel (what they hold goes back) and refuse further publishes."""
        for channel in list(self._channels):
            channel.close()
        self._connected = False
        await asyncio.sleep(0)

    async def __aenter__(self) -> InMemoryBroker:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def declare_work_queue(self, queue: str) -> None:
        try:
            check_queue_name(queue)
        except ValueError as exc:
            raise PublishFailed(f"cannot route a job to it: {exc}") from None
        self._require_connected()
        self._declare_base()
        name = work_queue(self.ns, queue)
        self._declare_queue(name, work_queue_arguments(self.ns, self.settings.queue_type))
        self._exchanges[work_exchange(self.ns)].bindings.add((False, name, queue))
        self._work_queues.add(queue)
        await asyncio.sleep(0)

    async def ensure_work_queue(self, queue: str) -> None:
        if not self.knows_work_queue(queue):
            await self.declare_work_queue(queue)

    def knows_work_queue(self, queue: str) -> bool:
        return queue in self._work_queues

    async def declare_parked_queue(self, job_type: str) -> str:
        self._require_connected()
        name = parked_queue(self.ns, job_type)
        self._declare_queue(name, queue_type_arguments(self.settings.queue_type))
        await asyncio.sleep(0)
        return name

    async def delay_route(self, queue: str, delay_ms: int) -> tuple[str, str]:
        await self.ensure_work_queue(queue)
        name = delay_queue(self.ns, queue, delay_ms)
        arguments = delay_queue_arguments(self.ns, queue, delay_ms, self.settings.queue_type)
        self._declare_queue(name, arguments)
        return "", name

    async def queue_depth(self, name: str) -> tuple[int, int] | None:
        self._require_connected()
        await asyncio.sleep(0)
        return self.depth(name)

    # -- the port: publishing ------------------------------------------------------

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> None:
        if not self._connected:
            raise PublishFailed(f"publish to {exchange!r}/{routing_key!r} not confirmed: closed")
        message_id = fitting_message_id(message_id)
        try:
            if not isinstance(body, bytes):
                raise TypeError(f"a body is bytes, not {type(body).__name__}")
            for short in (exchange, routing_key, message_id):
                if short is not None:
                    amqp_encode.short_string(short)
            encoded = _encode_headers(headers)
        except Exception as exc:  # what pamqp refuses to put on the wire
            raise PublishFailed(
                f"publish to {exchange!r}/{routing_key!r} failed: {exc!r}"
            ) from None
        published = Published(exchange, routing_key, body, _decode_headers(encoded), message_id)
        if any(refused(published) for refused in self._refusals):
            raise PublishFailed(f"publish to {exchange!r}/{routing_key!r} refused (fault hook)")
        queues = self._route(exchange, routing_key)
        if not queues:
            raise PublishFailed(
                f"no queue bound to exchange {exchange!r} with routing key {routing_key!r}: "
                "the broker returned the message unroutable"
            )
        for queue in queues:
            self._enqueue(queue, _Message(body, encoded, message_id, exchange, routing_key))
        self.dispatch()
        await asyncio.sleep(0)  # a confirm is a round trip: other tasks run meanwhile
        if any(lost(published) for lost in self._lost_confirms):
            raise PublishFailed(
                f"publish to {exchange!r}/{routing_key!r} not confirmed: confirm lost (fault hook)"
            )

    async def publish_many(self, outgoing: Iterable[Outgoing], *, in_flight: int = 1000) -> int:
        sent = 0
        for item in outgoing:
            await self.publish(*item)
            sent += 1
        return sent

    # -- the port: consuming and reading ------------------------------------------------

    async def consumers(self, *, prefetch: int) -> MemoryConsumers:
        self._require_connected()
        await asyncio.sleep(0)
        return MemoryConsumers(self._open_channel(prefetch))

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[MemoryReader]:
        self._require_connected()
        channel = self._open_channel(0)
        try:
            yield MemoryReader(channel)
        finally:
            channel.close()

    # -- for tests: time, faults, and what is going on ------------------------------

    def next_due(self) -> float | None:
        """When the next message of a TTL queue expires (virtual seconds), or None."""
        heads = [q.ready[0].due for q in self._queues.values() if q.ready and q.ttl is not None]
        due = [d for d in heads if d is not None]
        return min(due) if due else None

    def expire(self) -> None:
        """Dead-letter every message whose TTL ran out by ``clock.now`` (the clock calls it)."""
        for queue in list(self._queues.values()):
            while queue.ready and queue.ready[0].due is not None:
                if queue.ready[0].due > self.clock.now:
                    break
                self._dead_letter(queue, queue.ready.popleft(), "expired")
        self.dispatch()

    def advance(self, seconds: float) -> None:
        """Move the virtual clock; what expires meanwhile is dead-lettered in due order."""
        self.clock.advance(seconds)

    def advance_to(self, when: float) -> None:
        self.clock.advance_to(when)

    def refuse(self, predicate: Callable[[Published], bool]) -> Callable[[], None]:
        """Refuse the publishes ``predicate`` picks (PublishFailed, nothing enqueued) until
        the function returned is called."""
        self._refusals.append(predicate)
        return lambda: self._refusals.remove(predicate)

    def lose_confirm(self, predicate: Callable[[Published], bool]) -> Callable[[], None]:
        """Enqueue the publishes ``predicate`` picks, then raise PublishFailed as if their
        confirm was lost, until the function returned is called."""
        self._lost_confirms.append(predicate)
        return lambda: self._lost_confirms.remove(predicate)

    def busy(self) -> bool:
        """Whether anything is in motion: a delivery's callback running, a delivery held
        unacked on an open channel (readers' included), or a message ready in a queue
        that someone consumes."""
        if self._tasks:
            return True
        if any(channel.held for channel in self._channels):
            return True
        return any(q.ready and q.consumers for q in self._queues.values())

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Return once two checks in a row find the broker not :meth:`busy`; TimeoutError
        after ``timeout`` real seconds."""
        async with asyncio.timeout(timeout):
            quiet = 0
            while quiet < 2:
                quiet = 0 if self.busy() else quiet + 1
                await asyncio.sleep(0.001)

    def messages(self, queue: str) -> list[Published]:
        """The messages ready in ``queue``, head first, left where they are."""
        found = self._queues.get(queue)
        if found is None:
            return []
        return [
            Published(m.exchange, m.routing_key, m.body, _decode_headers(m.headers), m.message_id)
            for m in found.ready
        ]

    def queue_names(self) -> list[str]:
        return sorted(self._queues)

    # -- what the channels call --------------------------------------------------------

    def queue(self, name: str) -> _Queue | None:
        return self._queues.get(name)

    def depth(self, name: str) -> tuple[int, int] | None:
        """(ready, consumers); a quorum queue also counts, as RabbitMQ 3.10 does, each
        cancelled consumer still holding deliveries and each channel holding messages it
        took with ``basic.get``."""
        found = self._queues.get(name)
        if found is None:
            return None
        if not found.quorum:
            return len(found.ready), len(found.consumers)
        holders: set[object] = set(found.consumers)
        for channel in self._channels:
            for held in channel.held.values():
                if held.queue is found:
                    holders.add(held.consumer if held.consumer is not None else channel)
        return len(found.ready), len(holders)

    def delivery(
        self, queue: _Queue, message: _Message, tag: int, channel: MemoryChannel, *, got: bool
    ) -> Delivery:
        headers = _decode_headers(message.headers)
        if queue.quorum and (got or message.returns):
            # RabbitMQ 3.10's quorum queues: the count of returns, on every basic.get and
            # on a consumer's redeliveries; not stored (a dead letter keeps the headers
            # it was published with).
            headers["x-delivery-count"] = message.returns
        return Delivery(
            message.body,
            headers,
            message.message_id,
            tag,
            message.redelivered,
            message.routing_key,
            channel,
        )

    def settled(self, queue: _Queue, message: _Message) -> None:
        """An ack: the message is gone."""

    def returned(self, queue: _Queue, message: _Message) -> None:
        """Handed back unacked (a nack with requeue, a closed channel): to the head of its
        queue, redelivered; past a quorum queue's delivery limit, dead-lettered instead."""
        message.returns += 1
        limit = queue.delivery_limit
        if limit is not None and message.returns > limit:
            self._dead_letter(queue, message, "delivery_limit")
            return
        message.redelivered = True
        queue.ready.appendleft(message)

    def rejected(self, queue: _Queue, message: _Message) -> None:
        """A nack without requeue: dead-lettered if the queue has a dead-letter exchange."""
        self._dead_letter(queue, message, "rejected")

    def cancelled(self, consumer: _Consumer) -> None:
        if consumer in consumer.queue.consumers:
            consumer.queue.consumers.remove(consumer)

    def channel_closed(self, channel: MemoryChannel) -> None:
        if channel in self._channels:
            self._channels.remove(channel)

    def protocol_error(self, error: str) -> None:
        log.error("in-memory broker: %s: the channel is closed", error)
        self.protocol_errors.append(error)

    def dispatch(self) -> None:
        """Hand ready messages to consumers with room, round robin, each in its own task."""
        for queue in self._queues.values():
            while queue.ready and queue.consumers:
                consumer = next((c for c in queue.consumers if c.channel.has_room(c)), None)
                if consumer is None:
                    break
                queue.consumers.remove(consumer)
                queue.consumers.append(consumer)  # round robin
                delivery = consumer.channel.hold(queue, queue.ready.popleft(), consumer)
                self._run(consumer, delivery)

    # -- inside ------------------------------------------------------------------------

    def _run(self, consumer: _Consumer, delivery: Delivery) -> None:
        async def deliver() -> None:
            await consumer.callback(delivery)

        task = asyncio.get_running_loop().create_task(
            deliver(), name=f"lazarus-memory-delivery-{consumer.tag}-{delivery.delivery_tag}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._delivered)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("a consumer callback failed", exc_info=exc)
            self.callback_errors.append(exc)

    def _open_channel(self, prefetch: int) -> MemoryChannel:
        channel = MemoryChannel(self, prefetch)
        self._channels.append(channel)
        return channel

    def _require_connected(self) -> None:
        if not self._connected:
            raise RuntimeError("InMemoryBroker.connect() was not called")

    def _declare_base(self) -> None:
        """The namespace's exchanges and dead-letter queues, as Topology.declare_base."""
        ns = self.ns
        self._declare_exchange(work_exchange(ns), DIRECT)
        self._declare_exchange(dead_exchange(ns), FANOUT)
        self._declare_exchange(record_exchange(ns), FANOUT)
        self._exchanges[record_exchange(ns)].bindings.add((True, dead_exchange(ns), ""))
        arguments = queue_type_arguments(self.settings.queue_type)
        self._declare_queue(retained_queue(ns), arguments)
        self._exchanges[dead_exchange(ns)].bindings.add((False, retained_queue(ns), ""))
        self._declare_queue(recorder_queue(ns), arguments)
        self._exchanges[record_exchange(ns)].bindings.add((False, recorder_queue(ns), ""))

    def _declare_exchange(self, name: str, kind: str) -> None:
        found = self._exchanges.get(name)
        if found is None:
            self._exchanges[name] = _Exchange(name, kind)
        elif found.kind != kind:
            raise TopologyError(f"exchange {name!r} exists as {found.kind}, not {kind}")

    def _declare_queue(self, name: str, arguments: dict[str, Any]) -> None:
        found = self._queues.get(name)
        if found is None:
            self._queues[name] = _Queue(name, dict(arguments))
        elif found.arguments != arguments:
            raise TopologyError(
                f"queue {name!r} exists with other arguments than {arguments}: "
                f"PRECONDITION_FAILED - inequivalent arguments (it has {found.arguments})"
            )

    def _route(self, exchange: str, routing_key: str) -> list[_Queue]:
        """The queues a message reaches, each once; PublishFailed if the exchange is missing."""
        if exchange == "":
            found = self._queues.get(routing_key)
            return [found] if found is not None else []
        if exchange not in self._exchanges:
            raise PublishFailed(
                f"publish to {exchange!r}/{routing_key!r} not confirmed: "
                f"NOT_FOUND - no exchange {exchange!r}"
            )
        reached: dict[str, _Queue] = {}
        seen: set[str] = set()
        pending = [exchange]
        while pending:
            source = self._exchanges.get(pending.pop())
            if source is None or source.name in seen:
                continue
            seen.add(source.name)
            for to_exchange, name, key in sorted(source.bindings):
                if source.kind == DIRECT and key != routing_key:
                    continue
                if to_exchange:
                    pending.append(name)
                elif name in self._queues:
                    reached[name] = self._queues[name]
        return list(reached.values())

    def _enqueue(self, queue: _Queue, message: _Message) -> None:
        ttl = queue.ttl
        message.due = None if ttl is None else self.clock.now + ttl
        queue.ready.append(message)

    def _dead_letter(self, queue: _Queue, message: _Message, reason: str) -> None:
        """Route to the queue's dead-letter exchange with an ``x-death`` entry, as RabbitMQ
        does; what finds no queue (or no dead-letter exchange) is dropped."""
        exchange = queue.arguments.get("x-dead-letter-exchange")
        if exchange is None:
            self.dropped.append(Dropped(queue.name, reason, message.body, message.message_id))
            return
        routing_key = queue.arguments.get("x-dead-letter-routing-key", message.routing_key)
        headers = _decode_headers(message.headers)
        headers["x-death"] = self._deaths(headers.get("x-death"), queue, message, reason)
        headers.setdefault("x-first-death-reason", reason)
        headers.setdefault("x-first-death-queue", queue.name)
        headers.setdefault("x-first-death-exchange", message.exchange)
        try:
            targets = self._route(exchange, routing_key)
        except PublishFailed:
            targets = []
        if not targets:
            self.dropped.append(Dropped(queue.name, reason, message.body, message.message_id))
            return
        encoded = _encode_headers(headers)
        for target in targets:
            dead = _Message(message.body, encoded, message.message_id, exchange, routing_key)
            self._enqueue(target, dead)

    def _deaths(
        self, earlier: Any, queue: _Queue, message: _Message, reason: str
    ) -> list[dict[str, Any]]:
        """``x-death``, newest first: one entry per (queue, reason), its count raised."""
        deaths = [d for d in earlier if isinstance(d, dict)] if isinstance(earlier, list) else []
        for death in deaths:
            if death.get("queue") == queue.name and death.get("reason") == reason:
                deaths.remove(death)
                death["count"] = int(death.get("count", 0)) + 1
                return [death, *deaths]
        entry = {
            "count": 1,
            "reason": reason,
            "queue": queue.name,
            "time": self.clock.wall(),
            "exchange": message.exchange,
            "routing-keys": [message.routing_key],
        }
        return [entry, *deaths]


if TYPE_CHECKING:

    def _meets_the_port(broker: InMemoryBroker) -> BrokerPort:
        return broker
