"""Deliveries without aio-pika's per-message wrapper, on aio-pika's robust connection.

aio-pika turns every delivery into an ``IncomingMessage`` (twenty attribute writes,
each checking a lock) and runs the callback in a second task: about a tenth of a
no-op job's cost (bench/README.md). A :class:`LightConsumer` registered on a
:class:`LightQueue` gets a slotted :class:`Delivery` straight from aiormq, in the task
aiormq already made for it. The queue keeps aio-pika's bookkeeping, so the robust
channel restores the consumer after a reconnect as it would any other; if aio-pika
restores it through its own path instead, the consumer still gets a ``Delivery``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aio_pika.abc import AbstractIncomingMessage, ConsumerTag, TimeoutType
from aio_pika.robust_channel import RobustChannel
from aio_pika.robust_connection import RobustConnection
from aio_pika.robust_queue import RobustQueue
from aiormq.abc import DeliveredMessage
from pamqp.common import Arguments


class AckChannel(Protocol):
    """What a :class:`Delivery` settles through: aiormq's channel, or the in-memory broker's.

    Tags ascend per channel; a multiple ack covers every unsettled tag up to its own.
    """

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> Awaitable[Any]: ...

    def basic_nack(
        self, delivery_tag: int, multiple: bool = False, requeue: bool = True
    ) -> Awaitable[Any]: ...


DeliveryCallback = Callable[["Delivery"], Awaitable[Any]]
"""A consumer callback: gets each delivery, in a task of its own."""


class Delivery:
    """One delivered message: what a worker or the recorder reads of it, and ack / nack."""

    __slots__ = (
        "body",
        "channel",
        "delivery_tag",
        "headers",
        "message_id",
        "redelivered",
        "routing_key",
    )

    def __init__(
        self,
        body: bytes,
        headers: dict[str, Any],
        message_id: str | None,
        delivery_tag: int | None,
        redelivered: bool,
        routing_key: str | None,
        channel: AckChannel,
    ) -> None:
        self.body = body
        self.headers = headers
        self.message_id = message_id
        self.delivery_tag = delivery_tag
        self.redelivered = redelivered
        self.routing_key = routing_key
        self.channel = channel

    @classmethod
    def delivered(cls, message: DeliveredMessage) -> Delivery:
        properties = message.header.properties
        return cls(
            message.body,
            properties.headers or {},
            properties.message_id,
            message.delivery_tag,
            bool(message.redelivered),
            message.routing_key,
            message.channel,
        )

    @classmethod
    def incoming(cls, message: AbstractIncomingMessage) -> Delivery:
        return cls(
            message.body,
            dict(message.headers or {}),
            message.message_id,
            message.delivery_tag,
            bool(message.redelivered),
            message.routing_key,
            message.channel,
        )

    async def ack(self, multiple: bool = False) -> None:
        assert self.delivery_tag is not None
        await self.channel.basic_ack(self.delivery_tag, multiple=multiple)

    async def nack(self, requeue: bool = True) -> None:
        assert self.delivery_tag is not None
        await self.channel.basic_nack(self.delivery_tag, requeue=requeue)


class LightConsumer:
    """A consumer callback taking a :class:`Delivery`, whichever path delivers it."""

    def __init__(self, target: Callable[[Delivery], Awaitable[Any]]) -> None:
        self.target = target

    async def deliver(self, message: DeliveredMessage) -> None:
        """aiormq's path: the light one."""
        await self.target(Delivery.delivered(message))

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        """aio-pika's path, should it restore the consumer by itself."""
        await self.target(Delivery.incoming(message))


class LightQueue(RobustQueue):
    """A robust queue that consumes a :class:`LightConsumer` without aio-pika's wrapper."""

    async def consume(
        self,
        callback: Callable[[AbstractIncomingMessage], Awaitable[Any]],
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: Arguments = None,
        consumer_tag: ConsumerTag | None = None,
        timeout: TimeoutType = None,
        robust: bool = True,
    ) -> ConsumerTag:
        if not isinstance(callback, LightConsumer):
            return await super().consume(
                callback, no_ack, exclusive, arguments, consumer_tag, timeout, robust
            )
        channel = await self.channel.get_underlay_channel()
        result = await channel.basic_consume(
            queue=self.name,
            consumer_callback=callback.deliver,
            exclusive=exclusive,
            no_ack=no_ack,
            arguments=arguments,
            consumer_tag=consumer_tag,
            timeout=timeout,
        )
        if result.consumer_tag is None:
            raise RuntimeError("the broker returned no consumer tag")
        if robust:  # what the robust channel restores after a reconnect
            self._consumers[result.consumer_tag] = dict(
                callback=callback, no_ack=no_ack, exclusive=exclusive, arguments=arguments
            )
        return result.consumer_tag


class LightChannel(RobustChannel):
    QUEUE_CLASS = LightQueue


class LazarusConnection(RobustConnection):
    """aio-pika's robust connection whose channels declare :class:`LightQueue` queues."""

    CHANNEL_CLASS = LightChannel
