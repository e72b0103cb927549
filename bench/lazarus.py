"""Lazarus sections: enqueue and backlog drain, latency at a fixed rate, worker memory.

Each measurement uses its own LAZARUS_NAMESPACE and deletes its queues and exchanges
afterwards. The worker always runs in its own process (:mod:`bench.lazarus_worker`).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil

from bench.common import (
    Child,
    Collector,
    Disturbed,
    check_undisturbed,
    child_env,
    delete,
    drain,
    percentile,
    python,
    queue_depth,
    rate,
    stop_all,
)
from bench.common import unique as unique_name
from engine.amqp.topology import (
    dead_letter_queues,
    namespace_exchanges,
    work_queue,
)
from engine.client import Client
from engine.pg.store import Store
from engine.settings import Settings, load_settings

QUEUE = "default"


def namespace() -> str:
    return unique_name("bench")


async def cleanup(ns: str) -> None:
    await delete([work_queue(ns, QUEUE), *dead_letter_queues(ns)], namespace_exchanges(ns))


@asynccontextmanager
async def fresh_namespace(
    queue_type: str = "quorum", *, database: bool = True
) -> AsyncIterator[tuple[Settings, Store | None]]:
    """A fresh namespace with its work queue declared and, with ``database``, its schema
    migrated (the store is None without); all of it is deleted on the way out."""
    settings = load_settings(namespace=namespace(), queue_type=queue_type)
    store = Store(settings) if database else None
    try:
        if store is not None:
            await store.connect(require_schema=False)
            await store.migrate()
        async with Client(settings) as client:
            await client.declare_queue(QUEUE)
        yield settings, store
    finally:
        try:
            if store is not None:
                await store.drop_schema()
        finally:
            if store is not None:
                await store.close()
            await cleanup(settings.namespace)


async def start_worker(
    collector: Collector,
    ns: str,
    queue_type: str,
    concurrency: int,
    *,
    record: bool = False,
    **env: str,
) -> Child:
    argv = python("-m", "bench.lazarus_worker", "--concurrency", str(concurrency))
    child = await Child.start(
        "lazarus-worker",
        argv + (["--record"] if record else []),
        child_env(collector.address, LAZARUS_NAMESPACE=ns, LAZARUS_QUEUE_TYPE=queue_type, **env),
    )
    try:
        await child.wait_line("ready")
    except BaseException:
        await child.stop()
        raise
    return child


async def throughput(
    collector: Collector,
    n: int,
    queue_type: str,
    concurrency: int,
    *,
    tracked: bool = False,
    processes: int = 1,
) -> dict[str, Any]:
    """Enqueue N noop jobs (no worker running), then time a worker draining them.

    ``tracked``: the worker records every job's states in PostgreSQL (as `lazarus worker`
    does by default); otherwise it runs without a database.
    """
    async with fresh_namespace(queue_type, database=tracked) as (settings, store):
        ns = settings.namespace
        async with Client(settings) as client:
            started = time.perf_counter()
            await client.enqueue_many(("noop", None) for _ in range(n))
            enqueue_s = time.perf_counter() - started
        queued = await queue_depth(work_queue(ns, QUEUE))
        if queued != n:
            raise Disturbed(f"lazarus: {queued} messages queued for {n} enqueued")
        collector.reset()
        spawned = time.time()
        children: list[Child] = []
        try:
            for _ in range(processes):
                children.append(
                    await start_worker(collector, ns, queue_type, concurrency, record=tracked)
                )
            first, last, left = await drain(collector, children, n, work_queue(ns, QUEUE))
        finally:
            await stop_all(children)
        tracked_rows = (
            await store.pool.fetchval("SELECT count(*) FROM jobs WHERE state = 'succeeded'")
            if store is not None
            else None
        )
    return {
        "tracked": tracked,
        "processes": processes,
        "succeeded_rows": tracked_rows,
        "queue_type": queue_type,
        "n": n,
        "concurrency": concurrency,
        "publish_s": enqueue_s,
        "publish_per_s": rate(n, enqueue_s),
        "process_s": last - first,
        "process_per_s": rate(n - 1, last - first),
        "wall_from_spawn_s": last - spawned,
        "processed": collector.done,
        "left_in_queue": left,
    }


async def latency(
    collector: Collector, rate_per_s: float, seconds: float, queue_type: str, concurrency: int
) -> dict[str, Any]:
    """Enqueue one job at a time at a fixed rate; each handler records created_at -> start."""
    ns = namespace()
    settings = load_settings(namespace=ns, queue_type=queue_type)
    n = int(rate_per_s * seconds)
    fd, path = tempfile.mkstemp(prefix="bench-latency-", suffix=".json")
    os.close(fd)
    try:
        collector.reset()
        child = await start_worker(collector, ns, queue_type, concurrency, BENCH_LATENCY_FILE=path)
        try:
            async with Client(settings) as client:
                loop = asyncio.get_running_loop()
                tasks = []
                behind = 0
                t0 = loop.time()
                for i in range(n):
                    delay = t0 + i / rate_per_s - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    else:
                        behind += 1
                    tasks.append(asyncio.create_task(client.enqueue("bench_latency")))
                await asyncio.gather(*tasks)
                publish_s = loop.time() - t0
            await collector.wait(n, watch=child)
        finally:
            await child.stop()
        check_undisturbed(child, None)
        values = json.loads(await asyncio.to_thread(Path(path).read_text))
    finally:
        os.unlink(path)
        await cleanup(ns)
    return {
        "queue_type": queue_type,
        "target_per_s": rate_per_s,
        "achieved_per_s": rate(n, publish_s),
        "n": n,
        "samples": len(values),
        "p50_ms": percentile(values, 50) * 1000,
        "p99_ms": percentile(values, 99) * 1000,
        "max_ms": max(values) * 1000 if values else float("nan"),
    }


async def memory(
    collector: Collector, in_flight: int, seconds: float, waves: int, queue_type: str
) -> dict[str, Any]:
    """Peak RSS of a worker holding ``in_flight`` sleeping jobs, over ``waves`` rounds."""
    ns = namespace()
    settings = load_settings(namespace=ns, queue_type=queue_type)
    n = in_flight * waves
    try:
        collector.reset()
        child = await start_worker(collector, ns, queue_type, in_flight)
        try:
            process = psutil.Process(child.pid)
            await asyncio.sleep(0.5)
            idle = process.memory_info().rss
            peak = idle

            async def sample() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, process.memory_info().rss)
                    await asyncio.sleep(0.02)

            sampler = asyncio.create_task(sample())
            async with Client(settings) as client:
                await client.enqueue_many(("bench_sleep", {"seconds": seconds}) for _ in range(n))
            await collector.wait(n, watch=child)
            sampler.cancel()
            after = process.memory_info().rss
        finally:
            await child.stop()
        check_undisturbed(child, None)
    finally:
        await cleanup(ns)
    mib = 1024 * 1024
    return {
        "queue_type": queue_type,
        "in_flight_target": in_flight,
        "in_flight_seen": collector.max_in_flight,
        "jobs": n,
        "sleep_s": seconds,
        "idle_rss_mib": idle / mib,
        "peak_rss_mib": peak / mib,
        "after_rss_mib": after / mib,
        "per_job_kib": (peak - idle) / 1024 / max(1, collector.max_in_flight),
    }
