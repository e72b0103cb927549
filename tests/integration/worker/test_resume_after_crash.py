"""A tracked job whose run was lost (its worker died, or stopped past its grace) resumes
from the checkpoint it saved last, not from the one its message carries."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from engine import Client, JobContext, RetryPolicy, handler
from engine.pg.store import Store
from engine.settings import Settings
from engine.worker.consume import Worker
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

PAGES = 6
HOLD_AT = 3
starts: dict[str, list[int]] = {}
holding: set[str] = set()  # jobs whose first run waits at page HOLD_AT until stopped


@handler("resume.pages", policy=RetryPolicy(attempts=1, max_retries=0, timeout=None))
async def pages(ctx: JobContext) -> None:
    start = (ctx.checkpoint_state or {}).get("page", 0)
    starts.setdefault(ctx.job_id, []).append(start)
    for page in range(start, PAGES):
        if page == HOLD_AT and ctx.job_id in holding:
            holding.discard(ctx.job_id)
            await asyncio.Event().wait()  # until its worker stops
        await ctx.checkpoint({"page": page + 1})


@asynccontextmanager
async def tracking(settings: Settings, grace: float = 5.0) -> AsyncIterator[Worker]:
    store = Store(settings)
    await store.connect()
    worker = Worker(settings, ["default"], store=store)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop(grace=grace)
        await store.close()


async def saved_page(store: Store, job_id: str) -> int | None:
    job = await store.get_job(job_id)
    return None if job is None or job["checkpoint"] is None else int(job["checkpoint"]["page"])


async def page_is(store: Store, job_id: str, page: int) -> bool:
    return await saved_page(store, job_id) == page


async def state_is(store: Store, job_id: str, state: str) -> bool:
    job = await store.get_job(job_id)
    return job is not None and job["state"] == state


async def test_a_run_stopped_past_its_grace_resumes_from_its_saved_checkpoint(
    dead_settings: Settings, store: Store
) -> None:
    async with Client(dead_settings) as client:
        async with tracking(dead_settings, grace=0.05):
            job_id = await client.enqueue("resume.pages", None)
            holding.add(job_id)
            await wait_for(lambda: page_is(store, job_id, HOLD_AT), what="pages saved")
        async with tracking(dead_settings):
            await wait_for(lambda: state_is(store, job_id, "succeeded"), what="the job done")
    assert starts[job_id] == [0, HOLD_AT]
    assert await saved_page(store, job_id) == PAGES


WORKER_SCRIPT = """
import asyncio, sys
from engine.settings import Settings
from engine.pg.store import Store
from engine.worker.consume import Worker
import tests.integration.worker.test_resume_after_crash as jobs

async def main() -> None:
    settings = Settings(
        amqp_url=sys.argv[1], database_url=sys.argv[2], namespace=sys.argv[3],
        queue_type=sys.argv[5],
    )
    jobs.holding.add(sys.argv[4])
    store = Store(settings)
    await store.connect()
    worker = Worker(settings, ["default"], store=store)
    await worker.start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_run_whose_worker_was_killed_resumes_from_its_saved_checkpoint(
    dead_settings: Settings, store: Store
) -> None:
    async with Client(dead_settings) as client:
        job_id = "resume-killed-" + os.urandom(4).hex()
        await client.declare_queue("default")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER_SCRIPT,
            dead_settings.amqp_dsn,
            dead_settings.database_dsn,
            dead_settings.namespace,
            job_id,
            dead_settings.queue_type.value,
        )
        try:
            await client.enqueue("resume.pages", None, job_id=job_id)
            await wait_for(lambda: page_is(store, job_id, HOLD_AT), what="pages saved")
        finally:
            process.send_signal(signal.SIGKILL)
            await process.wait()
        async with tracking(dead_settings):
            await wait_for(lambda: state_is(store, job_id, "succeeded"), what="the job done")
    assert starts[job_id] == [HOLD_AT]  # this process ran only the resumed run
    assert await saved_page(store, job_id) == PAGES
