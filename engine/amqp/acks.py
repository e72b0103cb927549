"""Acks in batches: one ``basic.ack`` with ``multiple`` for a run of finished deliveries.

A worker finishes many deliveries per event-loop tick; one frame (one socket write)
for each was a fifth of a no-op job's cost (measured, bench/). Deliveries get tags
1, 2, 3... in order on a channel; this acks, once per tick, the longest prefix of
them that is settled, with one multiple ack. A finished delivery behind one still
running is acked on its own, so a long job never holds back its neighbours' acks
(and with them the prefetch window). A multiple ack never covers a delivery that is
still running: it stops at the first one not settled.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from engine.amqp.consumer import Delivery

log = logging.getLogger("lazarus.acks")


class AckBatcher:
    """Acks of one consumer channel (it follows the channel across reconnects)."""

    def __init__(self) -> None:
        self._channel: Any = None  # the aiormq channel the tags below belong to
        self._unsettled: deque[int] = deque()  # delivered tags, ascending, not yet passed
        self._passed = 0  # every tag up to this one is settled (the broker numbers from 1)
        self._settled: set[int] = set()  # tags done (acked here, or settled elsewhere)
        self._to_ack: dict[int, Delivery] = {}
        self._scheduled = False
        # Frames go out in the order they were decided: a single ack of a tag must never
        # follow a multiple ack that already covered it (the broker would close the channel).
        self._sending = asyncio.Lock()
        self._senders: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak refs

    def delivered(self, delivery: Delivery) -> None:
        """Record a delivery; call before anything else happens to it, in delivery order."""
        if delivery.channel is not self._channel:  # a new channel after a reconnect
            self._channel = delivery.channel
            self._unsettled.clear()
            self._settled.clear()
            self._to_ack.clear()
            self._passed = 0
        tag = delivery.delivery_tag
        if tag is None:
            return
        if self._unsettled and tag < self._unsettled[-1]:  # out of order: keep it sorted
            ordered = sorted([*self._unsettled, tag])
            self._unsettled = deque(ordered)
        else:
            self._unsettled.append(tag)

    def ack(self, delivery: Delivery) -> None:
        """Ack at the end of this event-loop tick (with its neighbours)."""
        tag = delivery.delivery_tag
        if delivery.channel is not self._channel or tag is None:
            self._send([(delivery, False)])  # an old channel: the ack just fails
            return
        self._settled.add(tag)
        self._to_ack[tag] = delivery
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def settled(self, delivery: Delivery) -> None:
        """Note a delivery acked or nacked directly, so batches may pass over it."""
        if delivery.channel is self._channel and delivery.delivery_tag is not None:
            self._settled.add(delivery.delivery_tag)

    def _flush(self) -> None:
        self._scheduled = False
        upto: Delivery | None = None
        # Only a gapless run of tags: a tag not seen yet may belong to a delivery running now.
        while (
            self._unsettled
            and self._unsettled[0] == self._passed + 1
            and self._unsettled[0] in self._settled
        ):
            tag = self._unsettled.popleft()
            self._settled.discard(tag)
            self._passed = tag
            upto = self._to_ack.pop(tag, upto)
        frames = [(upto, True)] if upto is not None else []
        frames += [(d, False) for d in self._to_ack.values()]  # behind one still running
        self._to_ack.clear()
        if frames:
            self._send(frames)

    def _send(self, frames: list[tuple[Delivery, bool]]) -> None:
        task = asyncio.get_running_loop().create_task(self._send_in_order(frames))
        self._senders.add(task)
        task.add_done_callback(self._senders.discard)

    async def _send_in_order(self, frames: list[tuple[Delivery, bool]]) -> None:
        async with self._sending:
            for delivery, multiple in frames:
                try:
                    await delivery.ack(multiple=multiple)
                except Exception as exc:  # channel gone: the broker redelivers; the
                    # redelivery path copes
                    log.warning("ack failed (%r); the message will be redelivered", exc)

    async def drain(self) -> None:
        """Send what is pending now and wait until it is written (before the channel closes)."""
        if self._scheduled:
            self._flush()
        if self._senders:
            await asyncio.gather(*self._senders)
