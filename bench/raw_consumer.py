"""A bare aio-pika consumer process: ``python -m bench.raw_consumer QUEUE``.

The ceiling for more than one worker process: the same callback-per-delivery consume
as :func:`bench.ceiling.run` (prefetch 256, manual ack), in a process of its own, each
delivery counted by :mod:`bench.probe` as every system's jobs are. Prints ``ready``
once consuming; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bench import probe
from bench.common import AMQP_URL
from engine import loop as event_loop
from engine.settings import load_settings

PREFETCH = 256


async def run(queue_name: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.get_queue(queue_name, ensure=False)

        async def on_message(delivery: AbstractIncomingMessage) -> None:
            probe.finished()
            await delivery.ack()

        await queue.consume(on_message)
        print("ready", flush=True)
        await stop.wait()
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("queue")
    args = parser.parse_args()
    event_loop.run(run(args.queue), load_settings().event_loop)


if __name__ == "__main__":
    main()
