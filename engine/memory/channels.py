"""Channels of the in-memory broker: delivery tags, acks, consumers and readers.

The rules are RabbitMQ's, as the engine relies on them: tags ascend per channel across
every queue on it; a multiple ack settles every unacked tag up to its own; an ack of a
tag the channel does not hold (unknown, acked twice, nacked) is a protocol error that
closes the channel; closing a channel gives its unacked deliveries back, redelivered.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.amqp.port import Delivery, DeliveryCallback
from engine.errors import TopologyError

if TYPE_CHECKING:
    from engine.memory.broker import InMemoryBroker, _Message, _Queue

_consumer_tags = itertools.count(1)


class ChannelClosed(RuntimeError):
    """The channel is closed (by its user, a protocol error or the broker's close)."""


@dataclass(eq=False)
class _Consumer:
    tag: str
    queue: _Queue = field(repr=False)
    channel: MemoryChannel = field(repr=False)
    callback: DeliveryCallback = field(repr=False)
    unacked: int = 0


@dataclass(eq=False)
class _Held:
    """A delivery the channel holds until it is acked, nacked or the channel closes."""

    queue: _Queue
    message: _Message
    consumer: _Consumer | None  # None: taken with basic.get


@dataclass(eq=False)
class MemoryChannel:
    """One channel: its tag sequence and the deliveries it holds unacked."""

    broker: InMemoryBroker = field(repr=False)
    prefetch: int = 0  # per consumer; 0: no limit
    closed: bool = False
    held: dict[int, _Held] = field(default_factory=dict)  # ascending tags
    consumers: list[_Consumer] = field(default_factory=list)
    _last_tag: int = 0

    def hold(self, queue: _Queue, message: _Message, consumer: _Consumer | None) -> Delivery:
        self._last_tag += 1
        self.held[self._last_tag] = _Held(queue, message, consumer)
        if consumer is not None:
            consumer.unacked += 1
        return self.broker.delivery(queue, message, self._last_tag, self, got=consumer is None)

    def has_room(self, consumer: _Consumer) -> bool:
        return not self.prefetch or consumer.unacked < self.prefetch

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        for held in self._take(delivery_tag, multiple, "ack"):
            self.broker.settled(held.queue, held.message)
        self.broker.dispatch()

    async def basic_nack(
        self, delivery_tag: int, multiple: bool = False, requeue: bool = True
    ) -> None:
        for held in self._take(delivery_tag, multiple, "nack"):
            if requeue:
                self.broker.returned(held.queue, held.message)
            else:
                self.broker.rejected(held.queue, held.message)
        self.broker.dispatch()

    def _take(self, tag: int, multiple: bool, what: str) -> list[_Held]:
        if self.closed:
            raise ChannelClosed(f"{what} of delivery tag {tag} on a closed channel")
        if tag not in self.held:
            # RabbitMQ closes the channel (PRECONDITION_FAILED); the frame itself was sent.
            self.broker.protocol_error(f"PRECONDITION_FAILED - unknown delivery tag {tag} ({what})")
            self.close()
            return []
        tags = [t for t in self.held if t <= tag] if multiple else [tag]
        taken = [self.held.pop(t) for t in tags]
        for held in taken:
            if held.consumer is not None:
                held.consumer.unacked -= 1
        return taken

    def close(self) -> None:
        """Cancel its consumers and give back what it holds, redelivered, in tag order."""
        if self.closed:
            return
        self.closed = True
        for consumer in self.consumers:
            self.broker.cancelled(consumer)
        self.consumers.clear()
        held, self.held = list(self.held.values()), {}
        for h in reversed(held):  # each to the head: the first taken ends up first again
            self.broker.returned(h.queue, h.message)
        self.broker.channel_closed(self)
        self.broker.dispatch()

    def require_open(self) -> None:
        if self.closed:
            raise ChannelClosed("the channel is closed")


class MemoryConsumers:
    """Consumers on one in-memory channel (the port's ``Consumers``)."""

    def __init__(self, channel: MemoryChannel) -> None:
        self.channel = channel
        self._by_tag: dict[str, _Consumer] = {}

    async def consume(self, queue: str, callback: DeliveryCallback) -> str:
        self.channel.require_open()
        found = self.channel.broker.queue(queue)
        if found is None:
            raise TopologyError(f"no queue {queue!r} to consume from")
        consumer = _Consumer(f"amq.ctag-{next(_consumer_tags)}", found, self.channel, callback)
        self._by_tag[consumer.tag] = consumer
        self.channel.consumers.append(consumer)
        found.consumers.append(consumer)
        self.channel.broker.dispatch()
        await asyncio.sleep(0)
        return consumer.tag

    async def cancel(self, tag: str) -> None:
        self.channel.require_open()
        consumer = self._by_tag.pop(tag, None)
        if consumer is not None:
            self.channel.consumers.remove(consumer)
            self.channel.broker.cancelled(consumer)
        await asyncio.sleep(0)

    async def sync(self) -> None:
        # Acks take effect when sent here: nothing is in flight to wait for.
        self.channel.require_open()
        await asyncio.sleep(0)

    async def close(self) -> None:
        self.channel.close()
        await asyncio.sleep(0)


class MemoryReader:
    """``basic.get`` on an in-memory channel of its own (the port's ``QueueReader``)."""

    def __init__(self, channel: MemoryChannel) -> None:
        self.channel = channel

    async def depth(self, queue: str) -> tuple[int, int] | None:
        self.channel.require_open()
        await asyncio.sleep(0)
        return self.channel.broker.depth(queue)

    async def get(self, queue: str) -> Delivery | None:
        self.channel.require_open()
        await asyncio.sleep(0)
        found = self.channel.broker.queue(queue)
        if found is None:
            raise TopologyError(f"no queue {queue!r} to read from")
        if not found.ready:
            return None
        return self.channel.hold(found, found.ready.popleft(), None)
