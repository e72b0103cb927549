"""Enqueue-if-absent against the real services: the job a key created runs once, and the
key is held until it succeeds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from engine import Client, JobContext, handler
from engine.pg.store import Store
from engine.settings import Settings
from engine.states import JobState
from tests.conftest import wait_for
from tests.integration.lifecycle.conftest import tracking_worker

runs: dict[str, int] = {}
gates: dict[str, asyncio.Event] = {}


@handler("uk.report")
async def build_report(ctx: JobContext) -> None:
    runs[ctx.job_id] = runs.get(ctx.job_id, 0) + 1
    await gates.setdefault(ctx.job_id, asyncio.Event()).wait()


ran_at: dict[str, float] = {}


@handler("uk.stamp")
async def stamp(ctx: JobContext) -> None:
    ran_at[ctx.job_id] = asyncio.get_running_loop().time()


@handler("uk.untracked", track=False)
async def untracked(ctx: JobContext) -> None:
    pass


@pytest.fixture
async def client(store: Store, dead_settings: Settings) -> AsyncIterator[Client]:
    async with Client(dead_settings, store=store) as c:
        yield c


async def state_of(store: Store, job_id: str) -> str | None:
    row = await store.get_job(job_id)
    return None if row is None else str(row["state"])


async def test_the_created_job_runs_once_and_holds_its_key_until_it_succeeds(
    client: Client, store: Store, dead_settings: Settings
) -> None:
    first = await client.enqueue_if_absent("uk.report", {"day": 1}, key="report:day1")
    assert (first.created, first.state) == (True, JobState.PENDING)
    # Published at once: no relay runs yet, and the outbox is empty.
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 0
    again = await client.enqueue_if_absent("uk.report", {"day": 1}, key="report:day1")
    assert (again.job_id, again.created, again.state) == (first.job_id, False, JobState.PENDING)

    async with tracking_worker(dead_settings):
        await wait_for(lambda: runs.get(first.job_id) == 1, what="the job's run")
        await wait_for(lambda: _is(store, first.job_id, "running"), what="the job running")
        running = await client.enqueue_if_absent("uk.report", None, key="report:day1")
        assert (running.job_id, running.created, running.state) == (
            first.job_id, False, JobState.RUNNING,
        )  # fmt: skip
        gates.setdefault(first.job_id, asyncio.Event()).set()
        await wait_for(lambda: _is(store, first.job_id, "succeeded"), what="the job's success")
        assert runs[first.job_id] == 1
        row = await store.get_job(first.job_id)
        assert row is not None and (row["payload"], row["unique_key"]) == (
            {"day": 1}, "report:day1",
        )  # fmt: skip

        second = await client.enqueue_if_absent("uk.report", {"day": 1}, key="report:day1")
        assert second.created and second.job_id != first.job_id
        gates.setdefault(second.job_id, asyncio.Event()).set()
        await wait_for(lambda: _is(store, second.job_id, "succeeded"), what="the second job")
    assert runs[first.job_id] == 1 and runs[second.job_id] == 1


async def _is(store: Store, job_id: str, state: str) -> bool:
    return await state_of(store, job_id) == state


async def test_a_delayed_job_under_a_key_waits_in_a_delay_queue(
    client: Client, store: Store, dead_settings: Settings
) -> None:
    async with tracking_worker(dead_settings):
        began = asyncio.get_running_loop().time()
        job = await client.enqueue_if_absent("uk.stamp", key="stamp:1", delay=2)
        assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 0  # published
        again = await client.enqueue_if_absent("uk.stamp", key="stamp:1")
        assert (again.job_id, again.created) == (job.job_id, False)
        await wait_for(lambda: _is(store, job.job_id, "succeeded"), what="the delayed job")
    assert ran_at[job.job_id] - began >= 1.9


async def test_a_type_registered_untracked_cannot_take_a_key(client: Client) -> None:
    with pytest.raises(ValueError, match="track=False"):
        await client.enqueue_if_absent("uk.untracked", key="k")


@pytest.mark.parametrize("key", ["", "a\nb", "x" * 256, "é" * 128])
async def test_a_bad_key_is_refused_naming_it(client: Client, key: str) -> None:
    with pytest.raises(ValueError, match="unique key"):
        await client.enqueue_if_absent("uk.report", key=key)
