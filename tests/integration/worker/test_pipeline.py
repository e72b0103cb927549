"""Jobs published through the client, or by hand with a plain AMQP client, run."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import aio_pika
import orjson
import pytest

from engine import Client, JobContext, PublishFailed, Worker, handler
from engine.amqp.topology import work_exchange
from engine.settings import Settings
from tests.conftest import AMQP_URL, wait_for

seen: dict[str, list[object]] = {}


@handler("pipeline.record")
async def record(ctx: JobContext) -> None:
    seen.setdefault(ctx.job_id, []).append(ctx.payload)


async def test_job_published_through_the_client_runs(settings: Settings) -> None:
    worker = Worker(settings, ["default"], concurrency=4)
    await worker.start()
    try:
        async with Client(settings) as client:
            job_id = await client.enqueue("pipeline.record", {"n": 1})
        await wait_for(lambda: job_id in seen, what="the job to run")
        assert seen[job_id] == [{"n": 1}]
    finally:
        await worker.stop()


async def test_job_published_by_a_plain_amqp_client_runs(settings: Settings) -> None:
    job_id = f"plain-amqp-{uuid.uuid4()}"
    worker = Worker(settings, ["default"], concurrency=4)
    await worker.start()
    try:
        body = orjson.dumps(
            {
                "v": 1,
                "id": job_id,
                "type": "pipeline.record",
                "payload": {"from": "another language"},
                "created_at": datetime.now(UTC).isoformat(),
            }
        )
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(work_exchange(settings.namespace))
            await exchange.publish(
                aio_pika.Message(body, content_type="application/json", delivery_mode=2),
                routing_key="default",
            )
        await wait_for(lambda: job_id in seen, what="the hand-made job to run")
        assert seen[job_id] == [{"from": "another language"}]
    finally:
        await worker.stop()


async def test_enqueue_to_a_queue_nobody_declared_is_an_error(settings: Settings) -> None:
    async with Client(settings) as client:
        with pytest.raises(PublishFailed, match="nowhere"):
            await client.enqueue("pipeline.record", {}, queue="nowhere")


async def test_many_jobs_are_shared_by_competing_workers(settings: Settings) -> None:
    workers = [Worker(settings, ["default"], concurrency=8, worker_id=f"w{i}") for i in range(2)]
    for w in workers:
        await w.start()
    try:
        async with Client(settings) as client:
            ids = await client.enqueue_many(("pipeline.record", {"i": i}) for i in range(400))
        await wait_for(lambda: all(i in seen for i in ids), what="400 jobs to run")
        assert all(w.processed > 0 for w in workers)
        assert sum(len(seen[i]) for i in ids) == 400
    finally:
        await asyncio.gather(*(w.stop() for w in workers))
