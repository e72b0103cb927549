"""What only the in-memory broker has (its fault hooks, its clock, protocol errors), and a
real Worker running on it without RabbitMQ. The rules it shares with RabbitMQ are pinned
by tests/contract/test_broker.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from engine import Client, JobContext, RetryPolicy, Worker, handler
from engine.amqp.port import Delivery
from engine.amqp.topology import (
    delay_queue,
    record_exchange,
    recorder_queue,
    retained_queue,
    work_exchange,
    work_queue,
)
from engine.errors import PublishFailed
from engine.memory.broker import ChannelClosed, InMemoryBroker, Published, VirtualClock
from engine.message import H_REASON
from engine.settings import Settings
from tests.conftest import make_settings

NS = "mem"


@pytest.fixture
def settings() -> Settings:
    return make_settings(NS, shutdown_grace=0)


@pytest.fixture
async def broker(settings: Settings) -> AsyncIterator[InMemoryBroker]:
    b = InMemoryBroker(settings)
    await b.connect()
    await b.declare_work_queue("default")
    yield b
    await b.close()


async def test_a_refused_publish_enqueues_nothing_until_the_hook_is_removed(
    broker: InMemoryBroker,
) -> None:
    undo = broker.refuse(lambda p: p.message_id == "no")
    with pytest.raises(PublishFailed):
        await broker.publish(work_exchange(NS), "default", b"x", None, "no")
    await broker.publish(work_exchange(NS), "default", b"y", None, "yes")
    undo()
    await broker.publish(work_exchange(NS), "default", b"x", None, "no")
    assert [m.message_id for m in broker.messages(work_queue(NS, "default"))] == ["yes", "no"]


async def test_a_lost_confirm_fails_the_publish_but_the_message_is_there(
    broker: InMemoryBroker,
) -> None:
    seen: list[Published] = []

    def lose(published: Published) -> bool:
        seen.append(published)
        return True

    broker.lose_confirm(lose)
    with pytest.raises(PublishFailed):
        await broker.publish(work_exchange(NS), "default", b"x", {"x-h": 1}, "m")
    assert [(p.exchange, p.routing_key, p.headers) for p in seen] == [
        (work_exchange(NS), "default", {"x-h": 1})
    ]
    assert len(broker.messages(work_queue(NS, "default"))) == 1


async def test_what_pamqp_cannot_encode_fails_as_on_rabbitmq(broker: InMemoryBroker) -> None:
    with pytest.raises(PublishFailed):
        await broker.publish(work_exchange(NS), "default", b"x", {"tuple": (1, 2)})
    with pytest.raises(PublishFailed):
        await broker.publish(work_exchange(NS), "d" * 256, b"x")
    await broker.publish(work_exchange(NS), "default", b"x", None, "i" * 300)
    [message] = broker.messages(work_queue(NS, "default"))
    assert message.message_id is not None and message.message_id.startswith("sha256:")


async def test_acking_twice_is_a_protocol_error_that_closes_the_channel(
    broker: InMemoryBroker,
) -> None:
    for i in range(2):
        await broker.publish(work_exchange(NS), "default", f"{i}".encode())
    async with broker.reader() as reader:
        first = await reader.get(work_queue(NS, "default"))
        second = await reader.get(work_queue(NS, "default"))
        assert first is not None and second is not None
        await first.ack()
        await first.ack()  # the frame goes out; the broker closes the channel
        assert broker.protocol_errors == ["PRECONDITION_FAILED - unknown delivery tag 1 (ack)"]
        with pytest.raises(ChannelClosed):
            await second.ack()
    [back] = broker.messages(work_queue(NS, "default"))
    assert back.body == b"1"
    broker.protocol_errors.clear()


async def test_a_message_rejected_from_a_queue_without_dead_letter_exchange_is_dropped(
    broker: InMemoryBroker,
) -> None:
    await broker.publish(record_exchange(NS), "", b"dead", None, "d")
    async with broker.reader() as reader:
        copy = await reader.get(recorder_queue(NS))
        assert copy is not None
        await copy.nack(requeue=False)
    assert [(d.queue, d.reason, d.message_id) for d in broker.dropped] == [
        (recorder_queue(NS), "rejected", "d")
    ]
    assert len(broker.messages(retained_queue(NS))) == 1


async def test_the_clock_expires_delays_in_due_order_each_at_its_time(
    settings: Settings,
) -> None:
    clock = VirtualClock()
    broker = InMemoryBroker(settings, clock=clock)
    await broker.connect()
    short = await broker.delay_route("default", 1_000)
    long = await broker.delay_route("default", 60_000)
    await broker.publish(*long, b"long", None, "long")
    await broker.publish(*short, b"short", None, "short")
    assert broker.next_due() == 1.0
    broker.advance(0.5)
    assert broker.messages(work_queue(NS, "default")) == []
    broker.advance_to(120)
    assert clock.now == 120
    arrived = broker.messages(work_queue(NS, "default"))
    assert [m.message_id for m in arrived] == ["short", "long"]
    assert [m.headers["x-death"][0]["queue"] for m in arrived] == [
        delay_queue(NS, "default", 1_000),
        delay_queue(NS, "default", 60_000),
    ]
    died = [m.headers["x-death"][0]["time"] for m in arrived]
    assert int((died[1] - died[0]).total_seconds()) == 59  # each at its own expiry
    assert broker.next_due() is None
    with pytest.raises(ValueError):
        broker.advance(-1)
    await broker.close()


async def test_busy_until_every_delivery_is_settled(broker: InMemoryBroker) -> None:
    release = asyncio.Event()
    held: list[Delivery] = []

    async def slow(delivery: Delivery) -> None:
        held.append(delivery)
        await release.wait()
        await delivery.ack()

    consumers = await broker.consumers(prefetch=5)
    await consumers.consume(work_queue(NS, "default"), slow)
    assert not broker.busy()
    await broker.publish(work_exchange(NS), "default", b"x")
    assert broker.busy()
    with pytest.raises(TimeoutError):
        await broker.wait_idle(timeout=0.05)
    release.set()
    await broker.wait_idle()
    assert len(held) == 1 and not broker.busy()
    await consumers.close()


attempts: list[tuple[str, int]] = []


@handler("memory.works")
async def works(ctx: JobContext) -> None:
    attempts.append((ctx.job_id, ctx.attempt))


@handler("memory.fails", policy=RetryPolicy(transient=(), max_retries=2, retry_delay=60))
async def fails(ctx: JobContext) -> None:
    attempts.append((ctx.job_id, ctx.attempt))
    raise ConnectionError("card service down")


async def test_a_worker_runs_on_the_in_memory_broker_retries_on_its_clock_and_dead_letters(
    settings: Settings, broker: InMemoryBroker
) -> None:
    attempts.clear()
    worker = Worker(settings, ["default"], concurrency=4, broker=broker)
    await worker.start()
    async with Client(settings, broker=broker) as client:
        done = await client.enqueue("memory.works", {"n": 1})
        dying = await client.enqueue("memory.fails")
    await broker.wait_idle()
    assert sorted(attempts) == sorted([(done, 0), (dying, 0)])
    skipped = 0
    while (due := broker.next_due()) is not None:
        broker.advance_to(due)
        skipped += 1
        await broker.wait_idle()
    assert skipped == 2  # the 60 s and 120 s retries, without waiting for them
    assert [a for a in attempts if a[0] == dying] == [(dying, 0), (dying, 1), (dying, 2)]
    # No database: the dead letter goes to the recorder, and from there to the retained copy.
    [recorded] = broker.messages(recorder_queue(NS))
    [retained] = broker.messages(retained_queue(NS))
    assert recorded.message_id == retained.message_id == dying
    assert recorded.headers[H_REASON] == "retries exhausted"
    await worker.stop()
    assert broker.protocol_errors == [] and broker.callback_errors == []
    assert broker.dropped == []
    # The worker did not own the broker: it stays open, with no consumer left.
    assert await broker.queue_depth(work_queue(NS, "default")) == (0, 0)
    await broker.publish(work_exchange(NS), "default", b"later")
