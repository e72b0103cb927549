"""Taskiq peer: ``python -m bench.peers.taskiq_app N`` publishes N no-op tasks."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from aio_pika import ExchangeType
from taskiq_aio_pika import AioPikaBroker
from taskiq_aio_pika.exchange import Exchange
from taskiq_aio_pika.queue import Queue, QueueType

from bench import probe
from bench.common import pipelined

QUEUE = os.environ.get("BENCH_QUEUE", "bench_taskiq")
IN_FLIGHT = 1000

broker = AioPikaBroker(
    os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    qos=256,
    exchange=Exchange(name=QUEUE, type=ExchangeType.DIRECT),
    task_queues=[Queue(name=QUEUE, type=QueueType.CLASSIC)],
    dead_letter_queue=Queue(name=f"{QUEUE}.dead", type=QueueType.CLASSIC),
)


@broker.task(task_name="noop")
async def noop() -> None:
    probe.finished()


async def produce(n: int) -> None:
    await broker.startup()
    publish_s = await pipelined(n, noop.kiq, IN_FLIGHT)
    await broker.shutdown()
    print(json.dumps({"publish_s": publish_s}))


if __name__ == "__main__":
    asyncio.run(produce(int(sys.argv[1])))
