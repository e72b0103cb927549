"""Peer job queues measured like Lazarus: the same N no-op jobs, persistent, confirmed,
acked after the task ran. Each peer has an app module (its no-op task, which calls
:func:`bench.probe.finished`, and a ``produce N`` entry point timed inside its own
process) and a worker command line.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika

from bench.common import (
    AMQP_URL,
    Child,
    Collector,
    Disturbed,
    check_undisturbed,
    child_env,
    delete,
    python,
    queue_depth,
    rate,
    run_json,
    unique,
)

PREFETCH = 256  # deliveries a worker may hold, as in the ceiling and the Lazarus worker


@dataclass(frozen=True)
class Peer:
    name: str
    short: str  # setup column of the table
    packages: tuple[str, ...]  # importable modules that must be present
    config: str  # one line for the table and the JSON
    worker_argv: Callable[[str], list[str]]
    queues: Callable[[str], list[str]]
    exchanges: Callable[[str], list[str]] = lambda q: []
    env: dict[str, str] = field(default_factory=dict)

    def installed(self) -> bool:
        return all(importlib.util.find_spec(p) is not None for p in self.packages)


# Chosen by measurement on 2 cores (see README); override to compare pools.
CELERY_POOL = os.environ.get("BENCH_CELERY_POOL", "solo")
CELERY_CONCURRENCY = int(os.environ.get("BENCH_CELERY_CONCURRENCY", "1"))

PEERS = [
    Peer(
        "celery",
        f"{CELERY_POOL} pool -c {CELERY_CONCURRENCY}, acks_late",
        ("celery", "kombu"),
        f"pool={CELERY_POOL} -c {CELERY_CONCURRENCY}, prefetch {PREFETCH}, acks_late, "
        "confirm_publish, classic queue",
        lambda q: python(
            "-m",
            "celery",
            "-A",
            "bench.peers.celery_app",
            "worker",
            "-P",
            CELERY_POOL,
            "-c",
            str(CELERY_CONCURRENCY),
            "-Q",
            q,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ),
        lambda q: [q],
        lambda q: [q],
        {"BENCH_CELERY_PREFETCH_MULTIPLIER": str(max(1, PREFETCH // CELERY_CONCURRENCY))},
    ),
    Peer(
        "dramatiq",
        "2 processes x 8 threads",
        ("dramatiq", "pika"),
        "RabbitmqBroker(confirm_delivery=True), 2 processes x 8 threads, default prefetch "
        "(2 x threads), classic queue",
        lambda q: python(
            "-m",
            "dramatiq",
            "bench.peers.dramatiq_app",
            "--processes",
            "2",
            "--threads",
            "8",
            "--queues",
            q,
        ),
        lambda q: [q, f"{q}.DQ", f"{q}.XQ"],
    ),
    Peer(
        "taskiq",
        "2 processes, 256 async tasks, kiq() 1000 in flight",
        ("taskiq", "taskiq_aio_pika"),
        f"AioPikaBroker(qos={PREFETCH}), 2 worker processes, max-async-tasks {PREFETCH}, "
        "ack when_saved, classic queue, kiq() with 1,000 in flight",
        lambda q: python(
            "-m",
            "taskiq",
            "worker",
            "bench.peers.taskiq_app:broker",
            "--workers",
            "2",
            "--max-async-tasks",
            str(PREFETCH),
            "--ack-type",
            "when_saved",
            "--log-level",
            "WARNING",
        ),
        lambda q: [q, f"{q}.dead"],
        lambda q: [q],
    ),
]


async def run(peer: Peer, collector: Collector, n: int) -> dict[str, Any]:
    """Produce N jobs (no worker running), then time the peer's worker draining them."""
    queue = unique(f"bench_{peer.name}")
    env = child_env(collector.address, BENCH_QUEUE=queue, BENCH_AMQP_URL=AMQP_URL, **peer.env)
    try:
        produced = await _produce(peer, queue, env, n)
        queued = n
        collector.reset()
        spawned = time.time()
        child = await Child.start(peer.name, peer.worker_argv(queue), env)
        try:
            await collector.wait(n, watch=child)
        finally:
            await child.stop()
        first, last = collector.span()
        left = await queue_depth(queue)
        check_undisturbed(child, left)
    finally:
        await delete(peer.queues(queue), peer.exchanges(queue))
    return _figures(
        peer,
        n,
        publish_s=produced["publish_s"],
        publish_per_s=rate(n, produced["publish_s"]),
        queued_before_worker=queued,
        process_s=last - first,
        process_per_s=rate(n - 1, last - first),
        wall_from_spawn_s=last - spawned,
        processed=collector.done,
        left_in_queue=left,
    )


async def run_dead(peer: Peer, collector: Collector, n: int) -> dict[str, Any]:
    """Dramatiq's dead-letter path: N ``die`` jobs (no retries) on the backlog, timed from the
    first death until its ``.XQ`` dead-letter queue holds all N."""
    queue = unique(f"bench_{peer.name}_dead")
    env = child_env(collector.address, BENCH_QUEUE=queue, BENCH_AMQP_URL=AMQP_URL, **peer.env)
    try:
        await _produce(peer, queue, env, n, "die")
        collector.reset()
        child = await Child.start(peer.name, peer.worker_argv(queue), env)
        try:
            await collector.wait(n, watch=child)
            stored_at = await _when_queue_holds(f"{queue}.XQ", n, child)
        finally:
            await child.stop()
        first, _ = collector.span()
    finally:
        await delete(peer.queues(queue), peer.exchanges(queue))
    return _figures(peer, n, dead_s=stored_at - first, dead_per_s=rate(n, stored_at - first))


def _figures(peer: Peer, n: int, **measured: Any) -> dict[str, Any]:
    return {
        "peer": peer.name,
        "config": peer.config,
        "n": n,
        **measured,
        "python": sys.version.split()[0],
    }


async def _produce(
    peer: Peer, queue: str, env: dict[str, str], n: int, *extra: str
) -> dict[str, Any]:
    """Run the peer's producer for N jobs; the queue must then hold exactly N."""
    produced: dict[str, Any] = await run_json(
        python("-m", f"bench.peers.{peer.name}_app", str(n), *extra), env, timeout=30 + n / 250
    )
    queued = await queue_depth(queue)
    if queued != n:  # a producer that retried after a forced close sends duplicates
        raise Disturbed(f"{peer.name}: {queued} messages queued for {n} sent")
    return produced


async def _when_queue_holds(name: str, n: int, child: Child) -> float:
    """Wall-clock time at which ``name`` holds ``n`` messages (polled every 20 ms on one
    connection, so the polling does not churn connections on the broker)."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        while True:
            declared = await channel.declare_queue(name, passive=True)
            held = int(declared.declaration_result.message_count or 0)
            if held >= n:
                return time.time()
            if child.forced_close():
                raise Disturbed(f"broker forced connections closed; {held} of {n} in {name}")
            await asyncio.sleep(0.02)
    finally:
        await connection.close()
