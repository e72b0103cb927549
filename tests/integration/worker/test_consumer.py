"""Light deliveries: what the worker and the recorder consume, on every path that delivers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from aio_pika.queue import Queue

from engine.amqp.broker import Broker
from engine.amqp.consumer import Delivery, LightConsumer, LightQueue
from engine.amqp.topology import declare_queue, work_exchange, work_queue, work_queue_arguments
from engine.settings import Settings
from tests.conftest import queue_depth, wait_for


@pytest.fixture
async def broker_and_queue(settings: Settings) -> AsyncIterator[tuple[Broker, AbstractQueue]]:
    async with Broker(settings) as broker:
        await broker.declare_work_queue("default")
        channel = await broker.connection.channel()
        queue = await declare_queue(
            channel,
            work_queue(settings.namespace, "default"),
            work_queue_arguments(settings.namespace, settings.queue_type),
        )
        yield broker, queue
        await channel.close()


async def publish(broker: Broker, n: int) -> None:
    for i in range(n):
        await broker.publish(
            work_exchange(broker.ns), "default", f"body {i}".encode(), {"x-i": i}, f"id-{i}"
        )


async def test_a_light_consumer_gets_deliveries_it_can_ack(
    broker_and_queue: tuple[Broker, AbstractQueue],
) -> None:
    broker, queue = broker_and_queue
    assert isinstance(queue, LightQueue)
    got: list[Delivery] = []

    async def keep(delivery: Delivery) -> None:
        got.append(delivery)
        await delivery.ack()

    await queue.consume(LightConsumer(keep))
    await publish(broker, 3)
    await wait_for(lambda: len(got) == 3, what="3 deliveries")
    assert [d.body for d in got] == [b"body 0", b"body 1", b"body 2"]
    assert [d.message_id for d in got] == ["id-0", "id-1", "id-2"]
    assert [d.headers["x-i"] for d in got] == [0, 1, 2]
    assert {d.routing_key for d in got} == {"default"}
    assert not any(d.redelivered for d in got)
    await asyncio.sleep(0.2)
    assert await queue_depth(queue.name) == 0


async def test_aio_pikas_own_restore_path_still_hands_over_a_delivery(
    broker_and_queue: tuple[Broker, AbstractQueue],
) -> None:
    """The robust channel may restore a consumer through aio-pika's Queue.consume; the
    consumer then gets aio-pika's message, turned into a Delivery (nack and all)."""
    broker, queue = broker_and_queue
    got: list[Delivery] = []

    async def nack_first(delivery: Delivery) -> None:
        got.append(delivery)
        if len(got) == 1:
            await delivery.nack(requeue=True)
        else:
            await delivery.ack()

    await Queue.consume(queue, LightConsumer(nack_first))
    await publish(broker, 1)
    await wait_for(lambda: len(got) == 2, what="the delivery and its redelivery")
    assert all(isinstance(d, Delivery) for d in got)
    assert [d.redelivered for d in got] == [False, True]
    assert got[1].message_id == "id-0"


async def test_a_plain_callback_gets_aio_pikas_message(
    broker_and_queue: tuple[Broker, AbstractQueue],
) -> None:
    broker, queue = broker_and_queue
    got: list[AbstractIncomingMessage] = []

    async def keep(message: AbstractIncomingMessage) -> None:
        got.append(message)
        await message.ack()

    await queue.consume(keep)
    await publish(broker, 1)
    await wait_for(lambda: len(got) == 1, what="one message")
    assert isinstance(got[0], AbstractIncomingMessage) and got[0].body == b"body 0"
