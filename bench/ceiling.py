"""What RabbitMQ and aio-pika alone do on this box: the ceiling for Lazarus.

Publishes N persistent messages, the size of a Lazarus ``noop`` job body, with
publisher confirms and 1,000 in flight; then one consumer (prefetch 256, manual ack
after the callback) drains them. Same callback-per-delivery consume as the worker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bench.common import AMQP_URL, delete, rate, unique
from engine.client import build_message
from engine.message import encode

IN_FLIGHT = 1000
PREFETCH = 256


def body_like_lazarus() -> bytes:
    return encode(build_message("noop", None, "default", None, None, None))


async def run(n: int, queue_type: str) -> dict[str, Any]:
    name = unique(f"bench_ceiling_{queue_type}")
    body = body_like_lazarus()
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": queue_type})
        exchange = channel.default_exchange
        window = asyncio.Semaphore(IN_FLIGHT)

        async def one() -> None:
            try:
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await exchange.publish(message, name)
            finally:
                window.release()

        tasks = []
        started = time.perf_counter()
        for _ in range(n):
            await window.acquire()
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        publish_s = time.perf_counter() - started

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
    finally:
        await connection.close()
        await delete([name])
    return {
        "queue_type": queue_type,
        "n": n,
        "body_bytes": len(body),
        "publish_s": publish_s,
        "publish_per_s": rate(n, publish_s),
        "process_s": consume_s,
        "process_per_s": rate(n - 1, consume_s),
    }
