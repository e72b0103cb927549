"""Delay accuracy of broker-held delays: ``python -m bench.delays``.

Enqueues jobs with ``delay=`` (the mechanism broker retries use), runs them on an
in-process worker, and prints how late each delay arrived: actual minus asked.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from engine import Client, JobContext, Worker, handler
from engine.amqp.broker import Broker
from engine.amqp.topology import (
    dead_letter_queues,
    delay_queue,
    delay_tier_ms,
    namespace_exchanges,
    work_queue,
)
from engine.settings import load_settings

arrived: dict[str, float] = {}


@handler("bench_delay_probe", track=False)
async def probe(ctx: JobContext) -> None:
    arrived[ctx.job_id] = time.time()


async def measure(delays: list[float], per_delay: int) -> list[tuple[float, list[float]]]:
    settings = load_settings(namespace=f"bench_delay_{uuid.uuid4().hex[:6]}")
    worker = Worker(settings, ["default"], concurrency=64)
    await worker.start()
    results = []
    try:
        async with Client(settings, broker=worker.broker) as client:
            sent: dict[str, tuple[float, float]] = {}
            for delay in delays:
                for _ in range(per_delay):
                    job_id = await client.enqueue("bench_delay_probe", None, delay=delay)
                    sent[job_id] = (delay, time.time())
            deadline = time.time() + max(delays) * 1.2 + 10
            while len(arrived) < len(sent) and time.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            for delay in delays:
                late = [
                    arrived[j] - at - delay
                    for j, (d, at) in sent.items()
                    if d == delay and j in arrived
                ]
                results.append((delay, late))
    finally:
        await worker.stop()
    async with Broker(settings) as broker:  # delay queues expire by themselves; not the rest
        ns = settings.namespace
        names = [delay_queue(ns, "default", delay_tier_ms(d)) for d in delays]
        for name in [*names, work_queue(ns, "default"), *dead_letter_queues(ns)]:
            await broker.channel.queue_delete(name)
        for exchange in namespace_exchanges(ns):
            await broker.channel.exchange_delete(exchange)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delays", default="0.5,1,2,5,10")
    parser.add_argument("--per-delay", type=int, default=50)
    args = parser.parse_args()
    delays = [float(d) for d in args.delays.split(",")]
    header = ("asked", "jobs", "late p50", "late p99", "late max", "early")
    print("{:>7}  {:>5}  {:>9}  {:>9}  {:>9}  {:>5}".format(*header))
    for delay, late in asyncio.run(measure(delays, args.per_delay)):
        late_sorted = sorted(late)
        p99 = late_sorted[min(len(late_sorted) - 1, int(len(late_sorted) * 0.99))]
        print(
            f"{delay:>6.1f}s  {len(late):>5}  {statistics.median(late) * 1000:>7.0f}ms"
            f"  {p99 * 1000:>7.0f}ms  {max(late) * 1000:>7.0f}ms"
            f"  {sum(1 for x in late if x < 0):>5}"
        )


if __name__ == "__main__":
    main()
