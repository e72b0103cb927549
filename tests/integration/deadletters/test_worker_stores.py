"""A worker with a database stores its own deaths: one broker copy each, no recorder trip."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pytest

from engine import Client, JobContext, RetryPolicy, handler
from engine.amqp.broker import Broker
from engine.amqp.topology import recorder_queue, retained_queue, work_exchange, work_queue
from engine.pg.store import Store
from engine.settings import Settings
from engine.worker.settler import Settler
from tests.conftest import AMQP_URL, delete_queues, queue_depth, wait_for
from tests.integration.conftest import TcpProxy
from tests.integration.deadletters.test_recording import running

runs: dict[str, int] = {}


@handler("ws.doomed", policy=RetryPolicy(attempts=1, max_retries=0), track=False)
async def doomed(ctx: JobContext) -> None:
    runs[ctx.job_id] = runs.get(ctx.job_id, 0) + 1
    raise RuntimeError(f"job {ctx.job_id} fails")


tracked_runs: dict[str, int] = {}


@handler("ws.doomed.tracked", policy=RetryPolicy(attempts=1, max_retries=0))
async def doomed_tracked(ctx: JobContext) -> None:
    tracked_runs[ctx.job_id] = tracked_runs.get(ctx.job_id, 0) + 1
    raise RuntimeError(f"job {ctx.job_id} fails")


async def row_count(store: Store) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM dead_letters"))


async def depth_is(name: str, expected: int) -> bool:
    return await queue_depth(name) == expected


async def test_deaths_are_stored_by_the_worker_and_copied_to_the_retained_queue_only(
    dead_settings: Settings, store: Store
) -> None:
    ns = dead_settings.namespace
    async with running(dead_settings, record=False, store=True), Client(dead_settings) as client:
        ids = await client.enqueue_many(("ws.doomed", {"i": i}) for i in range(40))
        await wait_for(lambda: depth_is(retained_queue(ns), 40), what="40 retained copies")
    rows = await store.pool.fetch("SELECT job_id, error_type, traceback FROM dead_letters")
    assert sorted(r["job_id"] for r in rows) == sorted(ids)
    assert {r["error_type"] for r in rows} == {"RuntimeError"}
    assert all("Traceback" in r["traceback"] for r in rows)
    assert await queue_depth(recorder_queue(ns)) == 0  # no recorder ran, none was needed


async def test_a_copy_lost_after_the_commit_is_published_again_and_the_job_not_rerun(
    dead_settings: Settings, store: Store, refuse_one_dead_letter: list[int]
) -> None:
    """Crash point: the row is committed, the copy's publish fails before its confirm. The
    job comes back; its generation is stored dead, so it does not run again (its handler
    is untracked: no claim protects it), its dead letter is published, and it is acked."""
    ns = dead_settings.namespace
    async with running(dead_settings, record=False, store=True), Client(dead_settings) as client:
        job_id = await client.enqueue("ws.doomed", None)
        await wait_for(lambda: depth_is(retained_queue(ns), 1), what="the dead letter's copy")
        await wait_for(lambda: depth_is(work_queue(ns, "default"), 0), what="the job acked")
        await asyncio.sleep(0.3)
    assert runs[job_id] == 1
    assert not refuse_one_dead_letter
    [row] = await store.history(job_id)
    assert row["status"] == "dead" and row["error_type"] == "RuntimeError"
    assert await queue_depth(retained_queue(ns)) == 1


async def test_deaths_while_postgres_is_down_go_the_recorders_way_and_are_stored_once(
    dead_settings: Settings, store: Store, pg_proxy: TcpProxy
) -> None:
    ns = dead_settings.namespace
    proxied = dead_settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{pg_proxy.port}/postgres"}
    )
    await pg_proxy.cut()
    async with running(proxied, store=True), Client(dead_settings) as client:
        ids = await client.enqueue_many(("ws.doomed", {"i": i}) for i in range(30))
        await wait_for(lambda: depth_is(retained_queue(ns), 30), what="30 retained copies")
        assert await row_count(store) == 0  # nothing stored, nothing lost: on the broker
        await pg_proxy.start()
        await wait_for(lambda: _at_least(store, 30), timeout=30, what="30 rows after the outage")
        await asyncio.sleep(0.3)
    rows = await store.pool.fetch("SELECT job_id FROM dead_letters")
    assert sorted(r["job_id"] for r in rows) == sorted(ids)


async def _at_least(store: Store, n: int) -> bool:
    return await row_count(store) >= n


async def test_a_message_the_broker_dead_letters_reaches_the_recorder_and_the_retained_queue(
    dead_settings: Settings, store: Store
) -> None:
    """The work queues dead-letter to <ns>.dead.record: a reject without requeue (as any
    client may do) lands in the table with the broker's reason, and on <ns>.dead too."""
    ns = dead_settings.namespace
    try:
        async with Broker(dead_settings) as broker:
            await broker.declare_work_queue("orphan")
            await broker.publish(
                work_exchange(ns),
                "orphan",
                b'{"type": "ws.doomed", "id": "broker-dead-2"}',
                None,
                "broker-dead-2",
            )
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(work_queue(ns, "orphan"), ensure=False)
            delivery = await queue.get(timeout=5)
            assert delivery is not None
            await delivery.reject(requeue=False)
        async with running(dead_settings, store=True):
            await wait_for(lambda: _at_least(store, 1), what="the broker's dead letter")
        [row] = await store.history("broker-dead-2")
        assert row["reason"] == "broker: rejected"
        assert row["error_type"] == "BrokerDeadLetter"
        assert await queue_depth(retained_queue(ns)) == 1
    finally:
        await delete_queues([work_queue(ns, "orphan")])


async def test_a_worker_that_dies_between_the_dead_state_and_the_row_still_leaves_one_row(
    dead_settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crash point: a tracked job's DEAD state is written, the worker stops before the
    dead letter's row. The copy that comes back is refused a run (DEAD holds); the
    worker stores and publishes the dead letter from the job's row instead."""
    ns = dead_settings.namespace
    real = Settler.store_death
    dies = [1]

    async def die_once(self: Settler, *args: Any) -> bool:
        if dies:
            dies.pop()
            raise RuntimeError("the worker stops here (on purpose)")
        return await real(self, *args)

    monkeypatch.setattr(Settler, "store_death", die_once)
    async with running(dead_settings, record=False, store=True), Client(dead_settings) as client:
        job_id = await client.enqueue("ws.doomed.tracked", {"n": 1})
        await wait_for(lambda: depth_is(retained_queue(ns), 1), what="the dead letter's copy")
        await wait_for(lambda: depth_is(work_queue(ns, "default"), 0), what="the job acked")
    assert not dies
    assert tracked_runs[job_id] == 1
    [row] = await store.history(job_id)
    assert (row["status"], row["reason"], row["error_type"]) == (
        "dead",
        "retries exhausted",
        "RuntimeError",
    )
    assert row["payload"] == {"n": 1} and "Traceback" in row["traceback"]
    job = await store.get_job(job_id)
    assert job is not None and job["state"] == "dead"
