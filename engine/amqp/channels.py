"""Consuming and reading queues, each on a channel of its own: how the engine takes messages.

:class:`AmqpConsumers` is one consumer channel (a worker's, the recorder's): its tags
ascend across every queue consumed on it, which is what one multiple ack relies on. It
declares each queue it consumes with the arguments this process declared it with, so
aio-pika's robust channel restores the queue, and the consumer with it, after a reconnect.

:class:`AmqpReader` is a ``basic.get`` channel: a multiple ack on it covers only what
its own user took, and closing it gives back whatever it left unacked.
"""

from __future__ import annotations

import aiormq
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection

from engine.amqp.consumer import Delivery, DeliveryCallback, LightConsumer
from engine.amqp.topology import Topology, declare_queue, passive_queue
from engine.errors import TopologyError


class AmqpConsumers:
    """Consumers on one channel with a prefetch of ``prefetch`` per consumer."""

    def __init__(self, channel: AbstractChannel, topology: Topology, prefetch: int) -> None:
        self._channel = channel
        self._topology = topology
        self._prefetch = prefetch
        self._queues: dict[str, AbstractQueue] = {}  # declared on this channel
        self._consuming: dict[str, AbstractQueue] = {}  # consumer tag -> its queue

    async def consume(self, queue: str, callback: DeliveryCallback) -> str:
        """Start consuming ``queue``; ``callback`` gets each delivery in a task of its own.
        Returns the consumer tag. TopologyError if the queue does not exist."""
        declared = self._queues.get(queue)
        if declared is None:
            declared = await self._declare(queue)
            self._queues[queue] = declared
        tag = await declared.consume(LightConsumer(callback))
        self._consuming[tag] = declared
        return tag

    async def _declare(self, queue: str) -> AbstractQueue:
        # Declared (not just looked up) on this channel: a robust channel restores only the
        # queues declared on it, and their consumers with them, after a reconnect.
        arguments = self._topology.arguments_of(queue)
        if arguments is not None:
            return await declare_queue(self._channel, queue, arguments)
        found = await passive_queue(self._channel, queue)
        if found is None:
            raise TopologyError(f"no queue {queue!r} to consume from")
        return found

    async def cancel(self, tag: str) -> None:
        """Stop the consumer ``tag``: no new deliveries; the unacked ones stay to settle."""
        queue = self._consuming.pop(tag, None)
        if queue is not None:
            await queue.cancel(tag)

    async def sync(self) -> None:
        """Return once the broker has processed every frame sent before on this channel.

        ``basic.ack`` has no reply; a synchronous method on the same channel returns only
        after the broker has processed every frame sent before it, the acks included.
        """
        await self._channel.set_qos(prefetch_count=self._prefetch)

    async def close(self) -> None:
        """Close the channel: every delivery not acked goes back to its queue, redelivered."""
        if not self._channel.is_closed:
            await self._channel.close()


class AmqpReader:
    """Takes messages one at a time (``basic.get``), unacked, on a channel of its own."""

    def __init__(self, connection: AbstractRobustConnection) -> None:
        self._connection = connection
        self._channel: AbstractChannel | None = None

    async def _open(self) -> AbstractChannel:
        # A passive declare of a missing queue closes the channel: the next call opens
        # another (what the closed one held unacked went back with it).
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        return self._channel

    async def depth(self, queue: str) -> tuple[int, int] | None:
        """(messages ready, consumers) of ``queue``, or None if it does not exist."""
        # On the underlying channel: aio-pika's channel hands back the queue object it
        # declared first, with the counts of then.
        channel = await (await self._open()).get_underlay_channel()
        try:
            result = await channel.queue_declare(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        return int(result.message_count or 0), int(result.consumer_count or 0)

    async def get(self, queue: str) -> Delivery | None:
        """The message at the head of ``queue``, unacked, or None if it is empty.
        TopologyError if the queue does not exist."""
        channel = await self._open()
        source = await channel.get_queue(queue, ensure=False)
        try:
            message = await source.get(no_ack=False, fail=False)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise TopologyError(f"no queue {queue!r} to read from") from None
        return None if message is None else Delivery.incoming(message)

    async def open(self) -> None:
        await self._open()

    async def close(self) -> None:
        """Close the channel: every message taken and not acked goes back to its queue."""
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
