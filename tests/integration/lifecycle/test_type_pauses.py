"""Pausing a job type: its jobs are parked in RabbitMQ, the other types keep running."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from engine import Client, JobContext, handler
from engine.admin.lifecycle import Lifecycle
from engine.amqp.broker import Broker
from engine.amqp.parking import Parker, parked_count
from engine.amqp.topology import parked_queue, work_queue
from engine.pg.store import Store
from engine.registry import registered
from engine.settings import Settings
from engine.worker.consume import Worker
from tests.conftest import delete_queues, queue_depth, wait_for
from tests.integration.lifecycle.conftest import tracking_worker

runs: Counter[str] = Counter()


@handler("tp.held")
async def held(ctx: JobContext) -> None:
    runs[ctx.job_id] += 1


@handler("tp.free")
async def free(ctx: JobContext) -> None:
    runs[ctx.job_id] += 1


async def shipped_later(ctx: JobContext) -> None:
    """Registered by a test under a new type, as a deploy would ship it."""
    runs[ctx.job_id] += 1


@pytest.fixture
async def parked_cleanup(dead_settings: Settings) -> AsyncIterator[list[str]]:
    """Job types whose parked queues the test leaves; deleted afterwards."""
    types: list[str] = []
    yield types
    await delete_queues([parked_queue(dead_settings.namespace, t) for t in types])


async def _sees_pause(worker: Worker, job_type: str) -> bool:
    return worker.parker.holds(job_type)


async def _parked(control: Lifecycle, job_type: str, n: int) -> bool:
    [row] = await control.list_types([job_type])
    return bool(row.parked == n)


async def test_a_paused_type_is_parked_while_the_other_types_of_its_queue_run(
    dead_settings: Settings, control: Lifecycle, parked_cleanup: list[str]
) -> None:
    parked_cleanup.append("tp.held")
    assert await control.pause_type("tp.held", "bad deploy")
    assert not await control.pause_type("tp.held")
    async with tracking_worker(dead_settings) as worker, Client(dead_settings) as client:
        await wait_for(lambda: _sees_pause(worker, "tp.held"), what="the worker to see the pause")
        held_ids = [await client.enqueue("tp.held", {"i": i}) for i in range(5)]
        free_ids = [await client.enqueue("tp.free", {"i": i}) for i in range(5)]
        await wait_for(lambda: _parked(control, "tp.held", 5), what="five parked jobs")
        await wait_for(lambda: _all_ran(free_ids), what="the other type's jobs")
        assert not any(runs[i] for i in held_ids)
        assert await queue_depth(work_queue(dead_settings.namespace, "default")) == 0
    # A worker started while the type is paused honours the pause.
    async with tracking_worker(dead_settings) as worker, Client(dead_settings) as client:
        held_ids.append(await client.enqueue("tp.held", {"i": 5}))
        await wait_for(lambda: _parked(control, "tp.held", 6), what="a sixth parked job")
        [row] = await control.list_types(["tp.held"])
        assert (row.paused, row.reason, row.paused_by) == (True, "bad deploy", "operator")
        assert not any(runs[i] for i in held_ids)

        resumed, _moved = await control.resume_type("tp.held")
        assert resumed  # the worker's own resume pass may move some of the six first
        await wait_for(lambda: _all_ran(held_ids), what="the parked jobs after the resume")
    assert [runs[i] for i in held_ids] == [1] * 6
    [row] = await control.list_types(["tp.held"])
    assert (row.paused, row.parked) == (False, 0)


async def test_a_paused_type_no_worker_knows_yet_waits_instead_of_dying(
    dead_settings: Settings, control: Lifecycle, store: Store, parked_cleanup: list[str]
) -> None:
    """Pause a type, ship its handler later: its jobs are parked, not dead-lettered."""
    job_type = f"tp.shipped_{uuid.uuid4().hex[:8]}"
    parked_cleanup.append(job_type)
    assert job_type not in registered()
    assert await control.pause_type(job_type)
    async with tracking_worker(dead_settings) as worker, Client(dead_settings) as client:
        await wait_for(lambda: _sees_pause(worker, job_type), what="the worker to see the pause")
        job_id = await client.enqueue(job_type, {"report": 7})
        await wait_for(lambda: _parked(control, job_type, 1), what="the parked job")
        assert await store.pool.fetchval("SELECT count(*) FROM dead_letters") == 0
        handler(job_type)(shipped_later)
        assert (await control.resume_type(job_type))[0]
        await wait_for(lambda: _all_ran([job_id]), what="the job once its handler is known")
    assert runs[job_id] == 1


async def test_a_job_parked_after_its_type_was_resumed_goes_back_to_its_queue(
    dead_settings: Settings, extra_queues: list[str], parked_cleanup: list[str]
) -> None:
    """The race of a stale pause: the copy lands in the parked queue after the resume."""
    ns = dead_settings.namespace
    parked_cleanup.append("tp.late")
    extra_queues.append(work_queue(ns, "reports"))
    async with Broker(dead_settings) as broker:
        parker = Parker(broker)
        parker.update(frozenset({"tp.late"}))
        parker.update(frozenset())  # resumed while the copy below was on its way
        await parker.park("tp.late", "reports", b'{"type": "tp.late"}', "late-1")
        try:
            await wait_for(
                lambda: _depth_is(work_queue(ns, "reports"), 1), what="the job back in its queue"
            )
            assert await parked_count(broker, "tp.late") == 0
        finally:
            await parker.stop()


async def test_a_resume_moves_each_parked_job_once_while_a_worker_still_parks_them(
    dead_settings: Settings, control: Lifecycle, store: Store, parked_cleanup: list[str]
) -> None:
    """A worker that has not seen the resume parks the moved jobs again; the resume must
    not chase them back and forth (that worker moves them once it sees the resume)."""
    parked_cleanup.append("tp.held")
    assert await control.pause_type("tp.held")
    slow = Worker(dead_settings, ["default"], store=store, control_interval=3600)
    await slow.start()  # reads the pause at start, then not again for an hour
    try:
        async with Client(dead_settings) as client:
            held_ids = [await client.enqueue("tp.held", {"i": i}) for i in range(3)]
        await wait_for(lambda: _parked(control, "tp.held", 3), what="three parked jobs")
        assert await control.resume_type("tp.held") == (True, 3)
        await wait_for(lambda: _parked(control, "tp.held", 3), what="the stale worker parks again")
        assert not any(runs[i] for i in held_ids)
    finally:
        await slow.stop(grace=5)
    assert await control.resume_type("tp.held") == (False, 3)  # what the worker left parked


async def _all_ran(job_ids: list[str]) -> bool:
    return all(runs[i] for i in job_ids)


async def _depth_is(name: str, n: int) -> bool:
    return await queue_depth(name) == n
