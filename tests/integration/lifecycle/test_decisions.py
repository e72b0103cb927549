"""Decisions a worker wrote before it lost the message are carried out, never dropped.

The engine's rules (a refused retry, a requeue of a stopped job, the ack after the state
write, the crash loop) are pinned on the doubles in tests/memory/lifecycle/
test_decisions.py; here the crash loop goes the whole way on RabbitMQ's own redelivery.
"""

from __future__ import annotations

import aio_pika
import orjson
import pytest

from engine import JobContext, handler
from engine.admin.lifecycle import Lifecycle
from engine.amqp.topology import work_queue
from engine.filters import DeadFilter
from engine.message import H_REDELIVERIES
from engine.pg.store import Store
from engine.settings import Settings
from tests.conftest import AMQP_URL, wait_for
from tests.integration.lifecycle.conftest import tracking_worker
from tests.integration.lifecycle.test_states import state_is

pytestmark = pytest.mark.timeout(45)

runs: dict[str, list[int]] = {}


@handler("dec.counted")
async def counted(ctx: JobContext) -> None:
    runs.setdefault(ctx.job_id, []).append(ctx.attempt)


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
