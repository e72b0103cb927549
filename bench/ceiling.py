"""What RabbitMQ and aio-pika alone do on this box: the ceiling for Lazarus.

Publishes N persistent messages, the size of a Lazarus ``noop`` job body, with
publisher confirms and 1,000 in flight; then one consumer (prefetch 256, manual ack
after the callback) drains them. Same callback-per-delivery consume as the worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from bench.common import (
    AMQP_URL,
    Child,
    Collector,
    child_env,
    delete,
    drain,
    pipelined,
    python,
    rate,
    stop_all,
    unique,
)
from engine.client import build_message
from engine.message import encode

IN_FLIGHT = 1000
PREFETCH = 256


def body_like_lazarus() -> bytes:
    return encode(build_message("noop", None, "default", None, None, None))


async def publish_persistent(channel: AbstractChannel, body: bytes, queue: str) -> None:
    message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
    await channel.default_exchange.publish(message, queue)


@asynccontextmanager
async def filled_queue(
    name: str, n: int, queue_type: str
) -> AsyncIterator[tuple[aio_pika.abc.AbstractConnection, float]]:
    """A queue holding N persistent Lazarus-sized messages, published with confirms and
    1,000 in flight: (the connection, seconds the publishing took); deleted afterwards."""
    body = body_like_lazarus()
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": queue_type})
        publish_s = await pipelined(n, lambda: publish_persistent(channel, body, name), IN_FLIGHT)
        yield connection, publish_s
    finally:
        await connection.close()
        await delete([name])


async def run(n: int, queue_type: str) -> dict[str, Any]:
    name = unique(f"bench_ceiling_{queue_type}")
    async with filled_queue(name, n, queue_type) as (connection, publish_s):
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=PREFETCH)
        queue = await consume_channel.get_queue(name, ensure=False)
        done = asyncio.Event()
        count = 0
        first = 0.0

        async def on_message(delivery: AbstractIncomingMessage) -> None:
            nonlocal count, first
            await delivery.ack()
            count += 1
            if count == 1:
                first = time.perf_counter()
            if count == n:
                done.set()

        await queue.consume(on_message)
        await asyncio.wait_for(done.wait(), 300)
        consume_s = time.perf_counter() - first
    return {
        "queue_type": queue_type,
        "n": n,
        "body_bytes": len(body_like_lazarus()),
        "publish_s": publish_s,
        "publish_per_s": rate(n, publish_s),
        "process_s": consume_s,
        "process_per_s": rate(n - 1, consume_s),
    }


async def run_processes(
    collector: Collector, n: int, queue_type: str, processes: int
) -> dict[str, Any]:
    """The consume ceiling with ``processes`` consumer processes (``bench.raw_consumer``):
    the yardstick for as many Lazarus worker processes. N messages published first, as in
    :func:`run`; timed from the first to the last delivery counted in any process."""
    name = unique(f"bench_ceiling_{processes}p_{queue_type}")
    async with filled_queue(name, n, queue_type):
        collector.reset()
        children: list[Child] = []
        try:
            for i in range(processes):
                child = await Child.start(
                    f"raw-consumer-{i}",
                    python("-m", "bench.raw_consumer", name),
                    child_env(collector.address),
                )
                children.append(child)
                await child.wait_line("ready")
            first, last, _ = await drain(collector, children, n, name)
        finally:
            await stop_all(children)
    return {
        "queue_type": queue_type,
        "n": n,
        "processes": processes,
        "process_s": last - first,
        "process_per_s": rate(n - 1, last - first),
    }


def dead_headers_like_lazarus() -> dict[str, Any]:
    """Headers of the size a ``bench_die`` dead letter carries (traceback included)."""
    return {
        "x-lazarus-reason": "permanent error",
        "x-lazarus-worker": "bench-host:12345",
        "x-lazarus-queue": "default",
        "x-lazarus-died-at": "2026-01-01T00:00:00.000000+00:00",
        "x-lazarus-attempts": 1,
        "x-lazarus-error-type": "engine.errors.Permanent",
        "x-lazarus-error-message": "bench_die dies on purpose",
        "x-lazarus-traceback": "Traceback (most recent call last):\n"
        + '  File "/work/engine/worker/executor.py", line 120, in _call\n    await fn(ctx)\n' * 3
        + "engine.errors.Permanent: bench_die dies on purpose\n",
    }


async def run_dead(n: int, queue_type: str, *, via_recorder: bool = False) -> dict[str, Any]:
    """The broker work of N deaths, done by bare aio-pika in one process, no database.

    Per message, what a Lazarus worker that stores the row itself asks of RabbitMQ:
    consume it from a work queue, publish it with dead-letter headers (confirmed,
    mandatory) to a fanout exchange feeding one queue, ack it. With ``via_recorder``,
    the path a death takes when the worker cannot write the row: the exchange feeds a
    second queue, whose copies are consumed and acked in batches of 500 (multiple) as
    the recorder does. Timed from the first work delivery until the last original (or,
    via the recorder, the last copy) is acked. The N messages are published first,
    untimed.
    """
    work = unique(f"bench_dead_work_{queue_type}")
    retained, recorder = f"{work}.retained", f"{work}.recorder"
    body = body_like_lazarus()
    headers = dead_headers_like_lazarus()
    arguments: dict[str, Any] = {"x-queue-type": queue_type}
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        dead = await channel.declare_exchange(work, aio_pika.ExchangeType.FANOUT)
        copies = (retained, recorder) if via_recorder else (retained,)
        for name in (work, *copies):
            queue = await channel.declare_queue(name, durable=True, arguments=arguments)
            if name != work:
                await queue.bind(dead)
        await pipelined(n, lambda: publish_persistent(channel, body, work), IN_FLIGHT)

        work_channel = await connection.channel()
        await work_channel.set_qos(prefetch_count=PREFETCH)
        record_channel = await connection.channel()
        await record_channel.set_qos(prefetch_count=1000)
        done = asyncio.Event()
        first = 0.0
        recorded = 0
        killed = 0

        async def on_work(delivery: AbstractIncomingMessage) -> None:
            nonlocal first, killed
            if not first:
                first = time.perf_counter()
            message = aio_pika.Message(
                delivery.body,
                headers=headers,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=delivery.message_id,
            )
            await dead.publish(message, "", mandatory=True)
            await delivery.ack()
            killed += 1
            if killed == n and not via_recorder:
                done.set()

        async def on_copy(delivery: AbstractIncomingMessage) -> None:
            nonlocal recorded
            recorded += 1
            if recorded % 500 == 0 or recorded == n:
                await delivery.ack(multiple=True)
            if recorded == n:
                done.set()

        work_queue = await work_channel.get_queue(work, ensure=False)
        if via_recorder:
            record_queue = await record_channel.get_queue(recorder, ensure=False)
            await record_queue.consume(on_copy)
        await work_queue.consume(on_work)
        await asyncio.wait_for(done.wait(), 600)
        dead_s = time.perf_counter() - first
    finally:
        await connection.close()
        await delete([work, retained, recorder], [work])
    return {
        "queue_type": queue_type,
        "n": n,
        "via_recorder": via_recorder,
        "header_bytes": sum(len(str(v)) for v in headers.values()),
        "dead_s": dead_s,
        "dead_per_s": rate(n, dead_s),
    }
