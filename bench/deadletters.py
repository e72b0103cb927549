"""Dead-letter burst and bulk requeue: what the recorder and the admin API sustain.

Both rows need ``engine.deadletters.recorder`` and ``engine.admin.facade``; while either is
missing they say "not available yet" and carry no number.

Burst: N jobs of type ``bench_die_once`` (Permanent at once in their first generation)
wait in a queue; a worker with
the recorder (as ``lazarus worker --record``) kills them. Measured: the rate the worker
kills them (first to last handler run) and the rate they land in PostgreSQL (first
death to the moment ``Store.count_dead`` reaches N).

Bulk requeue: with the worker stopped, ``Admin.requeue`` of every dead letter of the
namespace (staged in the outbox, published with confirms); measured until it returns,
then the work queue must hold N messages. Then as many workers as killed them run the
requeued generation, which succeeds: first to last run, the rate requeued jobs run
again.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from typing import Any

from bench.common import (
    Child,
    Collector,
    Disturbed,
    check_undisturbed,
    drain,
    queue_depth,
    rate,
    stop_all,
)
from bench.lazarus import QUEUE, fresh_namespace, start_worker
from engine.amqp.topology import work_queue
from engine.client import Client

NEEDS = (
    "engine.deadletters.recorder",
    "engine.admin.facade",
    "engine.pg.store",
    "engine.filters",
    "engine.worker.runner",
)
RECORD_TIMEOUT = 180.0


def missing() -> list[str]:
    gone = []
    for name in NEEDS:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            gone.append(name)
    return gone


def not_available() -> dict[str, Any] | None:
    gone = missing()
    if gone:
        return {"status": f"not available yet ({', '.join(gone)} missing)"}
    return None


async def burst_and_requeue(
    collector: Collector, n: int, queue_type: str, concurrency: int, *, processes: int = 1
) -> dict[str, Any]:
    """One namespace, one schema: the burst, then the requeue of what it recorded.

    ``processes``: worker processes, each with its own recorder (as ``lazarus worker``).
    """
    from engine.admin.facade import Admin
    from engine.filters import DeadFilter

    async with fresh_namespace(queue_type) as (settings, store):
        assert store is not None
        ns = settings.namespace
        async with Client(settings) as client:
            await client.enqueue_many(("bench_die_once", None) for _ in range(n))
        collector.reset()
        children: list[Child] = []
        try:
            for _ in range(processes):
                children.append(
                    await start_worker(collector, ns, queue_type, concurrency, record=True)
                )
            await collector.wait(n, what="jobs killed", watch=children[0])
            deadline = time.monotonic() + RECORD_TIMEOUT
            while (recorded := await store.count_dead(DeadFilter())) < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{recorded} of {n} dead letters recorded")
                if any(c.forced_close() for c in children):  # a reconnect, not the recorder
                    raise Disturbed(f"broker forced connections closed; {recorded} of {n} recorded")
                await asyncio.sleep(0.02)
            stored_at = time.time()
        finally:
            await stop_all(children)
        left = await queue_depth(work_queue(ns, QUEUE))
        for child in children:
            check_undisturbed(child, left)
        first, last = collector.span()

        async with Admin(settings, actor="bench") as admin:
            started = time.perf_counter()
            moved = await admin.requeue(DeadFilter())
            requeue_s = time.perf_counter() - started
        queued = await queue_depth(work_queue(ns, QUEUE))
        if moved != n or queued != n:
            raise Disturbed(f"requeue moved {moved}, queue holds {queued}, expected {n}")
        rerun_first, rerun_last = await run_again(
            collector, n, settings.namespace, queue_type, concurrency, processes
        )
    return {
        "queue_type": queue_type,
        "n": n,
        "processes": processes,
        "concurrency": concurrency,
        "die_s": last - first,
        "die_per_s": rate(n - 1, last - first),
        "record_s": stored_at - first,
        "record_per_s": rate(n, stored_at - first),
        "requeue_s": requeue_s,
        "requeue_per_s": rate(n, requeue_s),
        "rerun_s": rerun_last - rerun_first,
        "rerun_per_s": rate(n - 1, rerun_last - rerun_first),
        "requeued": moved,
        "queued_after_requeue": queued,
    }


async def run_again(
    collector: Collector, n: int, ns: str, queue_type: str, concurrency: int, processes: int
) -> tuple[float, float]:
    """Run the N requeued jobs (states tracked, as ``lazarus worker``); first and last run."""
    collector.reset()
    children: list[Child] = []
    try:
        for _ in range(processes):
            children.append(await start_worker(collector, ns, queue_type, concurrency, record=True))
        first, last, _ = await drain(collector, children, n, work_queue(ns, QUEUE))
    finally:
        await stop_all(children)
    return first, last
