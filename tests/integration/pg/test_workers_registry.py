"""Workers register themselves: who runs which job types on which queues, alive or not."""

from __future__ import annotations

import asyncio

from engine import JobContext, handler
from engine.admin.facade import Admin
from engine.pg.workers import engine_version
from engine.settings import Settings
from engine.worker.runner import run_worker
from tests.conftest import wait_for


@handler("reg.ping", queue="pings")
async def ping(ctx: JobContext) -> None:
    """Registered so that the worker has a job type and queue of its own to report."""


async def test_a_worker_registers_what_it_runs_and_marks_its_stop(dead_settings: Settings) -> None:
    stop = asyncio.Event()
    running = asyncio.create_task(run_worker(dead_settings, ["pings"], 4, stop, record=True))
    try:
        async with Admin(dead_settings, broker=False) as admin:

            async def alive() -> bool:
                return any(w.alive for w in await admin.list_workers())

            await wait_for(alive, what="the worker's registration")
            [worker] = await admin.list_workers()
            assert worker.queues == ["pings"] and worker.job_types["reg.ping"] == "pings"
            assert worker.version == engine_version() and worker.stopped_at is None
            stop.set()
            await running
            [stopped] = await admin.list_workers()
            assert not stopped.alive and stopped.stopped_at is not None
    finally:
        stop.set()
        await asyncio.gather(running, return_exceptions=True)


async def test_the_registry_names_each_types_queue_for_producers(dead_settings: Settings) -> None:
    from engine.pg.store import Store
    from engine.pg.workers import WorkerInfo, known_routes

    store = Store(dead_settings)
    await store.connect()
    try:
        await store.register_worker(WorkerInfo("old:1", ("q1",), {"t.a": "q1", "t.b": "q1"}))
        await store.worker_stopped("old:1")
        await store.register_worker(WorkerInfo("new:2", ("q2",), {"t.a": "q2"}))
        assert await known_routes(store) == {"t.a": "q2", "t.b": "q1"}  # running workers win
    finally:
        await store.close()
