"""The broker port's rules, held by RabbitMQ and by the in-memory broker alike.

Every test runs against both (and both queue types). If the in-memory broker cannot
match RabbitMQ on something, the double is fixed, never the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from engine.amqp.broker import Broker
from engine.amqp.port import BrokerPort, Consumers, Delivery, Outgoing, QueueReader
from engine.amqp.topology import (
    BROKER_DELIVERY_LIMIT,
    dead_exchange,
    record_exchange,
    recorder_queue,
    retained_queue,
    work_exchange,
    work_queue,
)
from engine.errors import PublishFailed, TopologyError
from engine.memory.broker import InMemoryBroker
from engine.settings import QueueType, Settings

T = TypeVar("T")


@dataclass
class Side:
    """One implementation of the port, and how a test lets time pass on it."""

    broker: BrokerPort
    pass_time: Callable[[float], Awaitable[None]]  # real seconds, or the virtual clock
    quorum: bool

    def headers(self, published: dict[str, object], returns: int = 0) -> dict[str, object]:
        """What ``basic.get`` hands back: a quorum queue adds how often it came back."""
        return published | {"x-delivery-count": returns} if self.quorum else published

    def holding(self, holders: int) -> int:
        """The consumers a queue counts for ``holders`` that hold deliveries without
        consuming (a channel that used ``basic.get``, a cancelled consumer): a quorum
        queue counts them until their deliveries are settled."""
        return holders if self.quorum else 0


@pytest.fixture(params=["amqp", "memory"])
async def side(
    request: pytest.FixtureRequest, settings: Settings, extra_queues: list[str]
) -> AsyncIterator[Side]:
    quorum = settings.queue_type is QueueType.QUORUM
    if request.param == "amqp":
        real = Broker(settings, name=f"test-contract {request.node.name}")
        await real.connect()
        yield Side(real, asyncio.sleep, quorum)
        await real.close()
        return
    memory = InMemoryBroker(settings)
    await memory.connect()

    async def advance(seconds: float) -> None:
        memory.advance(seconds)
        await asyncio.sleep(0)

    yield Side(memory, advance, quorum)
    await memory.close()
    assert memory.protocol_errors == []
    assert memory.callback_errors == []


async def eventually(fetch: Callable[[], Awaitable[T | None]], what: str, timeout: float = 5) -> T:
    """What ``fetch`` returns once it returns something (RabbitMQ may take a moment)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await fetch()
        if result is not None:
            return result
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def depth_is(
    broker: BrokerPort, queue: str, ready: int, consumers: int | None = None
) -> None:
    """Wait for the depth (RabbitMQ counts a quorum queue's consumers a moment later)."""

    async def reached() -> bool | None:
        depth = await broker.queue_depth(queue)
        if depth is None or depth[0] != ready:
            return None
        return True if consumers is None or depth[1] == consumers else None

    await eventually(reached, f"{ready} ready in {queue}, {consumers} consumers")


async def collect(got: list[Delivery], count: int, *, settle: float = 0.0) -> list[Delivery]:
    async def enough() -> bool | None:
        return True if len(got) >= count else None

    await eventually(enough, f"{count} deliveries")
    await asyncio.sleep(settle)
    return sorted(got, key=lambda d: d.delivery_tag or 0)


async def test_a_publish_no_queue_takes_fails(side: Side) -> None:
    broker = side.broker
    with pytest.raises(PublishFailed):
        await broker.publish("", work_queue(broker.ns, "nowhere"), b"lost")
    with pytest.raises(PublishFailed):
        await broker.publish(work_exchange(broker.ns), "nowhere", b"lost")
    await broker.declare_work_queue("default")  # the publish channel still works
    await broker.publish(work_exchange(broker.ns), "default", b"kept", None, "id-1")
    await depth_is(broker, work_queue(broker.ns, "default"), 1)


async def test_a_work_queue_declared_is_known_and_a_bad_name_fails(side: Side) -> None:
    broker = side.broker
    assert not broker.knows_work_queue("default")
    await broker.ensure_work_queue("default")
    assert broker.knows_work_queue("default")
    assert await broker.queue_depth(work_queue(broker.ns, "default")) == (0, 0)
    assert await broker.queue_depth(work_queue(broker.ns, "missing")) is None
    with pytest.raises(PublishFailed):
        await broker.declare_work_queue("bad queue name!")


async def test_a_delay_queue_dead_letters_to_its_work_queue_when_its_ttl_runs_out(
    side: Side, extra_queues: list[str]
) -> None:
    broker = side.broker
    await broker.declare_work_queue("default")
    exchange, key = await broker.delay_route("default", 200)
    extra_queues.append(key)
    await broker.publish(exchange, key, b"later", {"x-kept": "yes"}, "id-late")
    work = work_queue(broker.ns, "default")
    assert await broker.queue_depth(key) == (1, 0)
    async with broker.reader() as reader:
        assert await reader.get(work) is None  # held in the delay queue
        await side.pass_time(0.2)
        delivery = await eventually(lambda: reader.get(work), "the delayed message")
        assert (delivery.body, delivery.message_id) == (b"later", "id-late")
        assert delivery.routing_key == "default"
        assert not delivery.redelivered
        assert delivery.headers["x-kept"] == "yes"
        [death] = delivery.headers["x-death"]
        assert (death["queue"], death["reason"], death["count"]) == (key, "expired", 1)
        assert death["exchange"] == exchange
        assert death["routing-keys"] == [key]
        assert delivery.headers["x-first-death-queue"] == key
        await delivery.ack()
    assert await broker.queue_depth(key) == (0, 0)


async def test_a_dead_letter_for_the_recorder_also_reaches_the_retained_queue(
    side: Side,
) -> None:
    broker = side.broker
    ns = broker.ns
    await broker.publish(record_exchange(ns), "", b"not stored", {"x-why": "db down"}, "d-1")
    await broker.publish(dead_exchange(ns), "", b"stored", None, "d-2")
    await depth_is(broker, retained_queue(ns), 2)
    await depth_is(broker, recorder_queue(ns), 1)
    async with broker.reader() as reader:
        copy = await eventually(lambda: reader.get(recorder_queue(ns)), "the recorder's copy")
        assert (copy.body, copy.message_id) == (b"not stored", "d-1")
        assert copy.headers == side.headers({"x-why": "db down"})
        await copy.ack()


async def test_a_rejected_work_message_is_dead_lettered_to_the_recorder(side: Side) -> None:
    broker = side.broker
    ns = broker.ns
    await broker.declare_work_queue("default")
    await broker.publish(work_exchange(ns), "default", b"poison", None, "p-1")
    async with broker.reader() as reader:
        delivery = await eventually(lambda: reader.get(work_queue(ns, "default")), "it")
        await delivery.nack(requeue=False)
        dead = await eventually(lambda: reader.get(recorder_queue(ns)), "its dead letter")
        [death] = dead.headers["x-death"]
        assert (death["queue"], death["reason"]) == (work_queue(ns, "default"), "rejected")
        assert (dead.body, dead.message_id) == (b"poison", "p-1")
        await dead.ack()
    await depth_is(broker, retained_queue(ns), 1)


async def test_one_multiple_ack_settles_two_queues_on_one_channel(
    side: Side, extra_queues: list[str]
) -> None:
    broker = side.broker
    ns = broker.ns
    extra_queues.extend([work_queue(ns, "a"), work_queue(ns, "b")])
    for name in ("a", "b"):
        await broker.declare_work_queue(name)
    consumers = await broker.consumers(prefetch=10)
    got: list[Delivery] = []

    async def keep(delivery: Delivery) -> None:
        got.append(delivery)

    await consumers.consume(work_queue(ns, "a"), keep)
    await consumers.consume(work_queue(ns, "b"), keep)
    await broker.publish(work_exchange(ns), "a", b"to a")
    await broker.publish(work_exchange(ns), "b", b"to b")
    first, second = await collect(got, 2)
    assert (first.delivery_tag, second.delivery_tag) == (1, 2)  # one sequence per channel
    assert {first.routing_key, second.routing_key} == {"a", "b"}
    await second.ack(multiple=True)
    await consumers.sync()
    await consumers.close()  # nothing unacked: nothing comes back
    for name in ("a", "b"):
        await depth_is(broker, work_queue(ns, name), 0, consumers=0)


async def test_closing_consumers_gives_back_what_they_hold_redelivered(side: Side) -> None:
    broker = side.broker
    ns = broker.ns
    await broker.declare_work_queue("default")
    consumers = await broker.consumers(prefetch=10)
    got: list[Delivery] = []

    async def hold(delivery: Delivery) -> None:
        got.append(delivery)

    tag = await consumers.consume(work_queue(ns, "default"), hold)
    assert isinstance(tag, str)
    for i in range(3):
        await broker.publish(work_exchange(ns), "default", f"job {i}".encode(), None, f"j-{i}")
    taken = await collect(got, 3)
    assert not any(d.redelivered for d in taken)
    await depth_is(broker, work_queue(ns, "default"), 0, consumers=1)
    await taken[0].ack()
    await consumers.close()
    await depth_is(broker, work_queue(ns, "default"), 2)
    async with broker.reader() as reader:
        back = [await eventually(lambda: reader.get(work_queue(ns, "default")), "it")]
        back.append(await eventually(lambda: reader.get(work_queue(ns, "default")), "it"))
        assert sorted(d.message_id or "" for d in back) == ["j-1", "j-2"]
        assert all(d.redelivered for d in back)
        await back[-1].ack(multiple=True)


async def test_a_cancelled_consumer_gets_nothing_new_and_still_acks_what_it_holds(
    side: Side,
) -> None:
    broker = side.broker
    ns = broker.ns
    await broker.declare_work_queue("default")
    consumers = await broker.consumers(prefetch=10)
    got: list[Delivery] = []

    async def hold(delivery: Delivery) -> None:
        got.append(delivery)

    tag = await consumers.consume(work_queue(ns, "default"), hold)
    await broker.publish(work_exchange(ns), "default", b"one")
    [held] = await collect(got, 1)
    await consumers.cancel(tag)
    await broker.publish(work_exchange(ns), "default", b"two")
    await depth_is(broker, work_queue(ns, "default"), 1, consumers=side.holding(1))
    assert len(got) == 1
    await held.ack()
    await consumers.sync()
    await depth_is(broker, work_queue(ns, "default"), 1, consumers=0)
    await consumers.close()
    await depth_is(broker, work_queue(ns, "default"), 1)


async def test_prefetch_bounds_what_one_consumer_holds(side: Side) -> None:
    broker = side.broker
    ns = broker.ns
    await broker.declare_work_queue("default")
    consumers = await broker.consumers(prefetch=2)
    got: list[Delivery] = []
    running: set[asyncio.Task[object] | None] = set()

    async def hold(delivery: Delivery) -> None:
        running.add(asyncio.current_task())
        got.append(delivery)

    await consumers.consume(work_queue(ns, "default"), hold)
    for i in range(5):
        await broker.publish(work_exchange(ns), "default", f"job {i}".encode())
    first = await collect(got, 2, settle=0.3)
    assert len(got) == 2
    assert len(running) == 2  # each callback in a task of its own
    await first[-1].ack(multiple=True)
    more = await collect(got, 4, settle=0.3)
    assert len(got) == 4
    await more[-1].ack(multiple=True)
    last = await collect(got, 5)
    await last[-1].ack()
    await consumers.sync()
    await consumers.close()
    await depth_is(broker, work_queue(ns, "default"), 0, consumers=0)


async def test_a_reader_takes_the_head_and_gives_back_what_it_did_not_ack(
    side: Side, extra_queues: list[str]
) -> None:
    broker = side.broker
    ns = broker.ns
    parked = await broker.declare_parked_queue("reports")
    extra_queues.append(parked)
    assert parked == f"{ns}.parked.reports"
    for i in range(3):
        await broker.publish("", parked, f"r{i}".encode(), {"x-from": "default"}, f"r-{i}")
    async with broker.reader() as reader:
        assert await reader.depth(f"{ns}.parked.nothing") is None
        assert await reader.depth(parked) == (3, 0)
        head = await reader.get(parked)
        assert head is not None
        assert (head.body, head.message_id) == (b"r0", "r-0")
        assert head.headers == side.headers({"x-from": "default"})
        assert head.routing_key == parked and not head.redelivered
        await depth_is(broker, parked, 2, consumers=side.holding(1))
        await head.ack()
        assert await reader.get(parked) is not None
    await depth_is(broker, parked, 2)
    async with broker.reader() as reader:
        again = await reader.get(parked)
        third = await reader.get(parked)
        assert again is not None and third is not None
        assert again.message_id == "r-1" and again.redelivered
        assert again.headers == side.headers({"x-from": "default"}, returns=1)
        assert third.message_id == "r-2" and not third.redelivered
        assert await reader.get(parked) is None
        await third.ack(multiple=True)
    await depth_is(broker, parked, 0, consumers=0)


async def test_reading_a_missing_queue_is_a_topology_error(side: Side) -> None:
    async with side.broker.reader() as reader:
        with pytest.raises(TopologyError):
            await reader.get(f"{side.broker.ns}.parked.nothing")
        assert await reader.depth(retained_queue(side.broker.ns)) == (0, 0)  # still usable


async def test_a_quorum_queue_dead_letters_what_comes_back_past_its_delivery_limit(
    side: Side,
) -> None:
    """A classic queue hands it out again and again."""
    broker = side.broker
    ns = broker.ns
    work = work_queue(ns, "default")
    await broker.declare_work_queue("default")
    await broker.publish(work_exchange(ns), "default", b"crash loop", None, "c-1")
    async with broker.reader() as reader:
        for returns in range(BROKER_DELIVERY_LIMIT + 1):
            delivery = await eventually(lambda: reader.get(work), f"delivery {returns + 1}")
            assert delivery.redelivered == (returns > 0)
            if side.quorum:
                assert delivery.headers["x-delivery-count"] == returns
            await delivery.nack(requeue=True)
        if side.quorum:
            dead = await eventually(lambda: reader.get(recorder_queue(ns)), "its dead letter")
            [death] = dead.headers["x-death"]
            assert (death["queue"], death["reason"]) == (work, "delivery_limit")
            assert dead.message_id == "c-1"
            await dead.ack()
            await depth_is(broker, work, 0, consumers=0)
        else:
            again = await eventually(lambda: reader.get(work), "one more delivery")
            assert again.redelivered
            await again.ack()


async def test_publish_many_counts_what_was_confirmed_and_fails_on_an_unroutable_one(
    side: Side,
) -> None:
    broker = side.broker
    ns = broker.ns
    await broker.declare_work_queue("default")
    batch: list[Outgoing] = [
        (work_exchange(ns), "default", f"job {i}".encode(), None, f"b-{i}") for i in range(3)
    ]
    assert await broker.publish_many(iter(batch), in_flight=2) == 3
    await depth_is(broker, work_queue(ns, "default"), 3)
    with pytest.raises(PublishFailed):
        await broker.publish_many([batch[0], (work_exchange(ns), "nowhere", b"x", None, None)])
    await depth_is(broker, work_queue(ns, "default"), 4)  # what came before it went out


def test_every_member_of_the_port_is_exercised_here() -> None:
    """A member the contract does not exercise could drift between the two brokers."""
    source = Path(__file__).read_text()
    for port in (BrokerPort, Consumers, QueueReader):
        members = [n for n in vars(port) if not n.startswith("_")]
        missing = [n for n in members if f".{n}(" not in source and f".{n})" not in source]
        assert not missing, f"{port.__name__} members without a contract test: {missing}"
