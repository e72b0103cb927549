"""Pausing a job type: its jobs are parked, the other types keep running. The engine's
rules of tests/integration/lifecycle/test_type_pauses.py on the in-memory broker."""

from __future__ import annotations

from collections import Counter

from engine import JobContext
from engine.admin.lifecycle import Lifecycle
from engine.amqp.parking import Parker, parked_count
from engine.amqp.topology import work_queue
from engine.registry import registered
from engine.testing import Lazarus
from engine.worker.consume import Worker
from tests.memory.helpers import until


def register(lz: Lazarus, runs: Counter[str], *types: str) -> None:
    for job_type in types:

        @lz.handler(job_type)
        async def run(ctx: JobContext) -> None:
            runs[ctx.job_id] += 1


async def parked(control: Lifecycle, job_type: str, n: int) -> bool:
    [row] = await control.list_types([job_type])
    return bool(row.parked == n)


async def test_a_paused_type_is_parked_while_the_other_types_of_its_queue_run(
    lz: Lazarus,
) -> None:
    """Rule: a paused type's jobs are parked (a worker started later honours the pause
    too), other types of the queue run, and a resume runs each parked job once."""
    runs: Counter[str] = Counter()
    register(lz, runs, "held", "free")
    control = lz.admin.jobs
    assert await control.pause_type("held", "bad deploy")
    assert not await control.pause_type("held")
    worker = lz.worker
    assert worker is not None
    await until(lambda: worker.parker.holds("held"), what="the worker to see the pause")
    held_ids = [await lz.enqueue("held", {"i": i}) for i in range(5)]
    free_ids = [await lz.enqueue("free", {"i": i}) for i in range(5)]
    await lz.drain()
    assert await parked(control, "held", 5)
    assert all(runs[i] == 1 for i in free_ids)
    assert not any(runs[i] for i in held_ids)
    assert lz.broker.messages(work_queue(lz.settings.namespace, "default")) == []
    await worker.stop(grace=0)
    # A worker started while the type is paused honours the pause.
    later = Worker(
        lz.settings, ["default"], store=lz.store, broker=lz.broker, control_interval=0.02
    )
    await later.start()
    try:
        held_ids.append(await lz.enqueue("held", {"i": 5}))
        await lz.drain()
        await until(lambda: parked(control, "held", 6), what="a sixth parked job")
        [row] = await control.list_types(["held"])
        assert (row.paused, row.reason, row.paused_by) == (True, "bad deploy", "test")
        assert not any(runs[i] for i in held_ids)
        resumed, _moved = await control.resume_type("held")
        assert resumed
        await until(lambda: all(runs[i] for i in held_ids), what="the parked jobs after resume")
        await lz.drain()
    finally:
        await later.stop(grace=0)
    assert [runs[i] for i in held_ids] == [1] * 6
    [row] = await control.list_types(["held"])
    assert (row.paused, row.parked) == (False, 0)


async def test_a_paused_type_no_worker_knows_yet_waits_instead_of_dying(lz: Lazarus) -> None:
    """Rule: a paused type without a handler is parked, not dead-lettered as unknown."""
    runs: Counter[str] = Counter()
    job_type = "shipped_later"
    assert job_type not in registered()
    control = lz.admin.jobs
    assert await control.pause_type(job_type)
    worker = lz.worker
    assert worker is not None
    await until(lambda: worker.parker.holds(job_type), what="the worker to see the pause")
    job_id = await lz.enqueue(job_type, {"report": 7})
    await lz.drain()
    assert await parked(control, job_type, 1)
    assert await lz.dead_letters() == []
    register(lz, runs, job_type)  # as a deploy would ship it
    assert (await control.resume_type(job_type))[0]
    await until(lambda: runs[job_id] == 1, what="the job once its handler is known")
    await lz.drain()
    assert runs[job_id] == 1


async def test_a_job_parked_after_its_type_was_resumed_goes_back_to_its_queue(
    lz: Lazarus,
) -> None:
    """Rule: a copy parked after its type's resume (a stale pause) goes back to its queue."""
    assert lz.worker is not None
    await lz.worker.stop(grace=0)
    parker = Parker(lz.broker)
    parker.update(frozenset({"late"}))
    parker.update(frozenset())  # resumed while the copy below was on its way
    try:
        await parker.park("late", "reports", b'{"type": "late"}', "late-1")
        reports = work_queue(lz.settings.namespace, "reports")
        await until(lambda: len(lz.broker.messages(reports)) == 1, what="back in its queue")
        assert await parked_count(lz.broker, "late") == 0
    finally:
        await parker.stop()


async def test_a_resume_moves_each_parked_job_once_while_a_worker_still_parks_them(
    lz: Lazarus,
) -> None:
    """Rule: a resume moves each parked job once; a worker that has not seen the resume
    parks them again and the resume does not chase them back and forth."""
    runs: Counter[str] = Counter()
    register(lz, runs, "held")
    control = lz.admin.jobs
    assert lz.worker is not None
    await lz.worker.stop(grace=0)
    assert await control.pause_type("held")
    slow = Worker(lz.settings, ["default"], store=lz.store, broker=lz.broker, control_interval=3600)
    await slow.start()  # reads the pause at start, then not again for an hour
    try:
        held_ids = [await lz.enqueue("held", {"i": i}) for i in range(3)]
        await lz.drain()
        assert await parked(control, "held", 3)
        assert await control.resume_type("held") == (True, 3)
        await lz.drain()
        await until(lambda: parked(control, "held", 3), what="the stale worker parks again")
        assert not any(runs[i] for i in held_ids)
    finally:
        await slow.stop(grace=0)
    assert await control.resume_type("held") == (False, 3)  # what the worker left parked
