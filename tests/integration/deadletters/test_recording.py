"""Dead jobs land in PostgreSQL exactly once per generation, whatever crashes in between."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
import pytest

from engine import Client, JobContext, RetryPolicy, Worker, handler
from engine.amqp.topology import record_exchange, retained_queue
from engine.deadletters.recorder import Recorder
from engine.pg.store import Store
from engine.settings import Settings
from engine.worker.runner import DeadLetterService
from tests.conftest import AMQP_URL, wait_for
from tests.integration.conftest import TcpProxy

runs: dict[str, int] = {}


@handler("dl.doomed", policy=RetryPolicy(attempts=1, max_retries=0))
async def doomed(ctx: JobContext) -> None:
    runs[ctx.job_id] = runs.get(ctx.job_id, 0) + 1
    raise RuntimeError(f"doomed job {ctx.job_id} fails")


@asynccontextmanager
async def running(
    settings: Settings, *, record: bool = True, store: bool = False
) -> AsyncIterator[Worker]:
    """A worker; with ``record`` its recorder and relay (as ``lazarus worker``); with
    ``store`` a database of its own (connected lazily: PostgreSQL may be down), so it
    tracks states and stores its own deaths."""
    job_store = Store(settings, min_size=0, max_size=4) if store else None
    if job_store is not None:
        await job_store.connect(require_schema=False)
    worker = Worker(settings, ["default"], concurrency=16, store=job_store)
    await worker.start()
    service = DeadLetterService(settings, worker.broker) if record else None
    if service is not None:
        await service.start()
    try:
        yield worker
    finally:
        if service is not None:
            await service.stop()
        await worker.stop(grace=5)
        if job_store is not None:
            await job_store.close()


async def retained_count(settings: Settings) -> int:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(retained_queue(settings.namespace), passive=True)
        assert queue.declaration_result is not None
        return int(queue.declaration_result.message_count or 0)


async def rows(store: Store) -> list[dict[str, object]]:
    return [dict(r) for r in await store.pool.fetch("SELECT * FROM dead_letters ORDER BY id")]


async def test_a_dead_job_is_stored_with_its_error_and_traceback(
    dead_settings: Settings, store: Store
) -> None:
    async with running(dead_settings), Client(dead_settings) as client:
        job_id = await client.enqueue("dl.doomed", {"order": 7})
        await wait_for(lambda: _count(store), what="the dead letter row")
    [row] = await rows(store)
    assert row["job_id"] == job_id
    assert row["generation"] == 0
    assert row["job_type"] == "dl.doomed"
    assert row["payload"] == {"order": 7}
    assert row["error_type"] == "RuntimeError"
    assert f"doomed job {job_id} fails" in str(row["error_message"])
    assert "Traceback" in str(row["traceback"]) and "doomed" in str(row["traceback"])
    assert row["reason"] == "retries exhausted"
    assert row["status"] == "dead"
    await wait_for(lambda: _eq(retained_count(dead_settings), 1), what="the retained copy")


async def _count(store: Store, n: int = 1) -> bool:
    return int(await store.pool.fetchval("SELECT count(*) FROM dead_letters")) >= n


async def _eq(value: object, expected: int) -> bool:
    return await value == expected  # type: ignore[misc]


async def test_a_burst_of_deaths_is_stored_once_each(dead_settings: Settings, store: Store) -> None:
    async with running(dead_settings), Client(dead_settings) as client:
        ids = await client.enqueue_many(("dl.doomed", {"i": i}) for i in range(300))
        await wait_for(lambda: _count(store, 300), what="300 dead letter rows")
    stored = await rows(store)
    assert sorted(r["job_id"] for r in stored) == sorted(ids)  # type: ignore[type-var]


async def test_copies_of_one_death_give_one_row(dead_settings: Settings, store: Store) -> None:
    """Crash point: the worker died after the dead-letter confirm, before its ack; the job
    ran again and died again. Both copies reach the recorder; one row is kept."""
    job_id = str(uuid.uuid4())
    async with running(dead_settings), Client(dead_settings) as client:
        for _ in range(3):  # three deliveries of the same generation, each dying
            await client.enqueue("dl.doomed", None, job_id=job_id)
        await wait_for(lambda: _eq(retained_count(dead_settings), 3), what="3 dead copies")
        await wait_for(lambda: _count(store), what="the row")
        await asyncio.sleep(0.5)
    assert len(await rows(store)) == 1


async def test_a_redelivered_batch_after_a_recorder_crash_is_not_stored_twice(
    dead_settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crash point: the recorder committed, then died before its ack."""
    acks_lost: list[int] = []

    async def lose_ack(self: Recorder, records: object) -> int:
        stored = await Recorder._insert.__wrapped__(self, records)  # type: ignore[attr-defined]
        acks_lost.append(stored)
        raise asyncio.CancelledError  # the process dies between commit and ack

    async with running(dead_settings, record=False), Client(dead_settings) as client:
        ids = await client.enqueue_many(("dl.doomed", {"i": i}) for i in range(20))
        broker_recorder = DeadLetterService(dead_settings, client.broker)
        original = Recorder._insert
        lose_ack.__wrapped__ = original  # type: ignore[attr-defined]
        monkeypatch.setattr(Recorder, "_insert", lose_ack)
        await broker_recorder.start()
        await wait_for(lambda: bool(acks_lost), what="a committed batch")
        await broker_recorder.stop()  # unacked: the broker redelivers the batch
        monkeypatch.setattr(Recorder, "_insert", original)
        second = DeadLetterService(dead_settings, client.broker)
        await second.start()
        await wait_for(lambda: _count(store, 20), what="20 rows")
        await asyncio.sleep(0.5)
        await second.stop()
    assert sorted(r["job_id"] for r in await rows(store)) == sorted(ids)  # type: ignore[type-var]


async def test_deaths_while_postgres_is_down_wait_and_are_stored_once(
    dead_settings: Settings, store: Store, pg_proxy: TcpProxy
) -> None:
    proxied = dead_settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{pg_proxy.port}/postgres"}
    )
    await pg_proxy.cut()  # the database is unreachable before the deaths begin
    async with running(proxied), Client(dead_settings) as client:
        ids = await client.enqueue_many(("dl.doomed", {"i": i}) for i in range(50))
        await wait_for(lambda: all(i in runs for i in ids), what="50 jobs to die")
        await asyncio.sleep(1.0)
        assert await rows(store) == []  # nothing stored, nothing lost: still on the broker
        await pg_proxy.start()
        await wait_for(lambda: _count(store, 50), timeout=30, what="50 rows after the outage")
    assert sorted(r["job_id"] for r in await rows(store)) == sorted(ids)  # type: ignore[type-var]


async def test_a_message_dead_lettered_by_the_broker_is_recorded(
    dead_settings: Settings, store: Store
) -> None:
    """What RabbitMQ dead-letters by itself (say, a delivery limit) is recorded too."""
    async with running(dead_settings, record=True) as worker:
        channel = await worker.broker.connection.channel()
        exchange = await channel.get_exchange(record_exchange(dead_settings.namespace))
        await exchange.publish(
            aio_pika.Message(
                b'{"type": "dl.doomed", "id": "broker-dead-1"}',
                headers={"x-death": [{"reason": "delivery_limit", "queue": "x", "count": 20}]},
            ),
            routing_key="",
        )
        await wait_for(lambda: _count(store), what="the broker's dead letter")
        await channel.close()
    [row] = await rows(store)
    assert row["job_id"] == "broker-dead-1"
    assert row["reason"] == "broker: delivery_limit"
    assert row["error_type"] == "BrokerDeadLetter"
