"""Delays a person asks for at enqueue, against the real broker: kept to the second, and
a job given a run-at time is not delivered before it."""

from __future__ import annotations

from datetime import timedelta

from engine import Client
from engine.amqp.topology import delay_queue, work_queue
from engine.message import now_utc
from engine.settings import Settings
from tests.conftest import queue_depth, wait_for


async def test_a_delay_of_a_day_less_a_second_is_held_for_exactly_that(
    settings: Settings, extra_queues: list[str]
) -> None:
    exact = delay_queue(settings.namespace, "default", 86_399_000)
    extra_queues.extend([exact, delay_queue(settings.namespace, "default", 86_000_000)])
    async with Client(settings) as client:
        await client.declare_queue()
        await client.enqueue("delays.any", None, delay=86_399)
    assert await queue_depth(exact) == 1
    assert await queue_depth(work_queue(settings.namespace, "default")) == 0


async def test_a_job_given_a_run_at_time_arrives_then_and_not_before(
    settings: Settings, extra_queues: list[str]
) -> None:
    ns = settings.namespace
    extra_queues.extend(delay_queue(ns, "default", ms) for ms in (1_000, 2_000, 3_000))
    work = work_queue(ns, "default")
    async with Client(settings) as client:
        await client.declare_queue()
        at = now_utc() + timedelta(seconds=2)
        await client.enqueue("delays.any", None, at=at)
        assert await queue_depth(work) == 0  # held, not delivered at once

        async def arrived() -> bool:
            return await queue_depth(work) == 1

        await wait_for(arrived, what="the job to reach its work queue")
        assert now_utc() >= at  # seen there only once its time had come


async def test_a_run_at_time_past_is_delivered_at_once(settings: Settings) -> None:
    async with Client(settings) as client:
        await client.declare_queue()
        await client.enqueue("delays.any", None, at=now_utc() - timedelta(days=1))
    assert await queue_depth(work_queue(settings.namespace, "default")) == 1
