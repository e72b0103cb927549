"""Batched acks never cover a delivery that is still running, and keep frames in order."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.amqp.acks import AckBatcher

sent: list[tuple[object, int, bool]] = []


class FakeDelivery:
    """Just what the batcher reads of an aio-pika delivery; ack() records the frame."""

    def __init__(self, channel: object, tag: int) -> None:
        self.channel = channel
        self.delivery_tag = tag

    async def ack(self, multiple: bool = False) -> None:
        await asyncio.sleep(0)  # a real ack awaits before its frame is written
        sent.append((self.channel, self.delivery_tag, multiple))


def deliveries(batcher: AckBatcher, channel: object, n: int) -> list[Any]:
    out = [FakeDelivery(channel, tag) for tag in range(1, n + 1)]
    for delivery in out:
        batcher.delivered(delivery)  # type: ignore[arg-type]
    return out


async def test_a_run_of_finished_deliveries_is_one_multiple_ack() -> None:
    sent.clear()
    batcher = AckBatcher()
    d = deliveries(batcher, "ch", 5)
    for delivery in d:
        batcher.ack(delivery)
    await batcher.drain()
    assert sent == [("ch", 5, True)]


async def test_deliveries_behind_a_running_one_are_acked_one_by_one() -> None:
    sent.clear()
    batcher = AckBatcher()
    d = deliveries(batcher, "ch", 5)
    for delivery in (d[0], d[1], d[3], d[4]):  # tag 3 is still running
        batcher.ack(delivery)
    await batcher.drain()
    assert sent == [("ch", 2, True), ("ch", 4, False), ("ch", 5, False)]
    sent.clear()
    batcher.ack(d[2])  # the slow one finishes: 4 and 5 are already acked, not again
    await batcher.drain()
    assert sent == [("ch", 3, True)]


async def test_a_nacked_delivery_is_passed_over_but_never_acked() -> None:
    sent.clear()
    batcher = AckBatcher()
    d = deliveries(batcher, "ch", 3)
    batcher.settled(d[1])  # nacked directly
    batcher.ack(d[0])
    batcher.ack(d[2])
    await batcher.drain()
    assert sent == [("ch", 3, True)]


async def test_a_new_channel_starts_afresh() -> None:
    sent.clear()
    batcher = AckBatcher()
    old = deliveries(batcher, "old", 2)
    new = deliveries(batcher, "new", 2)  # a reconnect: tags start again at 1
    batcher.ack(old[0])  # the old channel is gone: acked alone (and would just fail)
    for delivery in new:
        batcher.ack(delivery)
    await batcher.drain()
    assert ("old", 1, False) in sent and ("new", 2, True) in sent
    assert len(sent) == 2


async def test_a_tag_not_seen_yet_stops_the_multiple_ack() -> None:
    sent.clear()
    batcher = AckBatcher()
    first = FakeDelivery("ch", 1)
    third = FakeDelivery("ch", 3)
    for delivery in (first, third):  # tag 2 was delivered but has not been seen yet
        batcher.delivered(delivery)  # type: ignore[arg-type]
        batcher.ack(delivery)  # type: ignore[arg-type]
    await batcher.drain()
    assert sent == [("ch", 1, True), ("ch", 3, False)]  # never a multiple ack over tag 2


async def test_deliveries_seen_out_of_order_are_kept_in_tag_order() -> None:
    sent.clear()
    batcher = AckBatcher()
    d1, d2, d3 = (FakeDelivery("ch", tag) for tag in (1, 2, 3))
    for delivery in (d2, d1, d3):
        batcher.delivered(delivery)  # type: ignore[arg-type]
    for delivery in (d1, d3):  # tag 2 still running
        batcher.ack(delivery)  # type: ignore[arg-type]
    await batcher.drain()
    assert sent == [("ch", 1, True), ("ch", 3, False)]
