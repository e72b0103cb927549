"""A queue that exists with other arguments is refused with a message naming it."""

from __future__ import annotations

import aio_pika
import pytest

from engine import TopologyError, Worker
from engine.amqp.topology import work_queue
from engine.settings import QueueType, Settings
from tests.conftest import AMQP_URL


async def test_a_queue_declared_with_another_type_names_the_queue_and_the_difference(
    quorum_settings: Settings,
) -> None:
    name = work_queue(quorum_settings.namespace, "default")
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "classic"})
    assert quorum_settings.queue_type is QueueType.QUORUM
    worker = Worker(quorum_settings, ["default"])
    with pytest.raises(TopologyError) as raised:
        await worker.start()
    await worker.broker.close()
    message = str(raised.value)
    assert name in message
    # The broker names the first argument that differs and both values.
    assert "inequivalent arg" in message and "received" in message and "current is" in message
