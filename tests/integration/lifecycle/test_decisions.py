"""Decisions a worker wrote before it lost the message are carried out, never dropped."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import orjson
import pytest

from engine import Client, JobContext, JobStateConflict, Permanent, RetryPolicy, handler
from engine.admin.facade import Admin
from engine.admin.lifecycle import Lifecycle
from engine.amqp.topology import work_queue
from engine.errors import PublishFailed
from engine.filters import DeadFilter
from engine.message import H_REDELIVERIES
from engine.pg.store import Store
from engine.settings import Settings
from tests.conftest import AMQP_URL, wait_for
from tests.integration.lifecycle.conftest import tracking_worker
from tests.integration.lifecycle.test_states import job_state, state_is

pytestmark = pytest.mark.timeout(45)

runs: dict[str, list[int]] = {}


@handler("dec.fails_once", policy=RetryPolicy(attempts=1, max_retries=2, retry_delay=0.1))
async def fails_once(ctx: JobContext) -> None:
    runs.setdefault(ctx.job_id, []).append(ctx.attempt)
    if ctx.attempt == 0:
        raise RuntimeError("first run fails")


@handler("dec.counted")
async def counted(ctx: JobContext) -> None:
    runs.setdefault(ctx.job_id, []).append(ctx.attempt)


@handler("dec.dies", policy=RetryPolicy(attempts=1, max_retries=0))
async def dies(ctx: JobContext) -> None:
    raise Permanent("no way")


async def test_a_retry_whose_publish_failed_after_retrying_was_written_still_runs(
    dead_settings: Settings, control: Lifecycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with tracking_worker(dead_settings) as worker, Client(dead_settings) as client:
        publish = worker.broker.publish
        refused: list[str] = []

        async def refuse_first_retry(exchange: str, key: str, *args: Any, **kwargs: Any) -> None:
            if ".delay." in key and not refused:
                refused.append(key)
                await asyncio.sleep(0.3)  # RETRYING is in PostgreSQL by now
                raise PublishFailed("refused by the test")
            await publish(exchange, key, *args, **kwargs)

        monkeypatch.setattr(worker.broker, "publish", refuse_first_retry)
        job_id = await client.enqueue("dec.fails_once", None)
        await wait_for(lambda: state_is(control, job_id, "succeeded"), timeout=30, what="success")
    assert refused, "the retry's publish was never refused"
    assert runs[job_id] == [0, 1]


async def test_a_dead_letter_whose_job_a_person_stopped_is_not_requeued(
    dead_settings: Settings, store: Store
) -> None:
    async with tracking_worker(dead_settings), Client(dead_settings) as client:
        job_id = await client.enqueue("dec.dies", None)

        async def stored() -> bool:
            return await store.count_dead(DeadFilter(ids=(job_id,))) == 1

        await wait_for(stored, what="the dead letter")
    # What a person's cancel racing the death leaves behind: a dead letter, a cancelled job.
    await store.pool.execute("UPDATE jobs SET state = 'cancelled' WHERE job_id = $1", job_id)
    async with Admin(dead_settings, actor="operator") as admin:
        with pytest.raises(JobStateConflict, match="cancelled"):
            await admin.requeue_one(job_id)
        assert await admin.requeue(DeadFilter(ids=(job_id,))) == 0
        [letter] = await admin.show(job_id)
    assert letter.status == "dead"


async def test_a_crash_looping_tracked_job_is_decided_dead(
    dead_settings: Settings, control: Lifecycle, store: Store
) -> None:
    job_id = "crash-looper"
    body = orjson.dumps({"type": "dec.counted", "id": job_id})
    async with tracking_worker(dead_settings, queues=["default"]):
        pass  # declares the work queue
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(f"{dead_settings.namespace}.work")
        headers = {H_REDELIVERIES: dead_settings.max_redeliveries}
        await exchange.publish(aio_pika.Message(body, headers=headers), routing_key="default")
        # Taken and not acked: the broker hands it out again marked redelivered.
        consumer = await connection.channel()
        queue = await consumer.get_queue(work_queue(dead_settings.namespace, "default"))
        await wait_for(lambda: _got(queue), what="the message taken once")
        await consumer.close()
    async with tracking_worker(dead_settings):
        await wait_for(lambda: state_is(control, job_id, "dead"), what="the job row DEAD")

        async def stored() -> bool:
            return await store.count_dead(DeadFilter(ids=(job_id,))) == 1

        await wait_for(stored, what="the crash loop's dead letter")
    assert job_id not in runs
    job = await control.show(job_id)
    assert "CrashLoop" in str(job.cause)


async def _got(queue: aio_pika.abc.AbstractQueue) -> bool:
    return await queue.get(no_ack=False, fail=False) is not None


async def test_a_success_is_acked_only_after_its_state_is_written(
    dead_settings: Settings, control: Lifecycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker dying between the ack and the write would leave a RUNNING row forever."""
    gate = asyncio.Event()
    real_report = Store.report

    async def slow_success(self: Store, rows: Any) -> Any:
        if any("succeeded" in row for row in rows):
            await gate.wait()
        return await real_report(self, rows)

    monkeypatch.setattr(Store, "report", slow_success)
    async with tracking_worker(dead_settings) as worker, Client(dead_settings) as client:
        job_id = await client.enqueue("dec.counted", None)
        await wait_for(lambda: job_id in runs, what="the handler to run")
        await asyncio.sleep(0.3)
        assert worker.processed == 0  # ran, not acked: the ack waits for the row
        assert await job_state(control, job_id) == "running"
        gate.set()
        await wait_for(lambda: worker.processed == 1, what="the ack after the write")
        assert await job_state(control, job_id) == "succeeded"
