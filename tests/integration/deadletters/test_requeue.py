"""Moving dead jobs back: one live job per requeue however many callers race.

Every rule is also pinned on the doubles in tests/memory/deadletters/test_requeue.py;
what stays here goes the whole way or races on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from engine import Client, JobContext, RetryPolicy, handler
from engine.admin.facade import Admin
from engine.filters import DeadFilter
from engine.pg.store import Store
from engine.settings import Settings
from engine.states import RequeueMode
from tests.conftest import wait_for
from tests.integration.deadletters.test_recording import running

# job id -> list of (generation, attempt, checkpoint) per run
runs: dict[str, list[tuple[int, int, object]]] = {}
healed: set[str] = set()


@handler("rq.fragile", policy=RetryPolicy(attempts=1, max_retries=0))
async def fragile(ctx: JobContext) -> None:
    runs.setdefault(ctx.job_id, []).append(
        (ctx.message.generation, ctx.attempt, ctx.checkpoint_state)
    )
    if ctx.job_id not in healed:
        raise RuntimeError(f"generation {ctx.message.generation} fails")


async def _dead_rows(store: Store, n: int) -> bool:
    return int(await store.pool.fetchval("SELECT count(*) FROM dead_letters")) >= n


@pytest.fixture
async def admin(dead_settings: Settings) -> AsyncIterator[Admin]:
    async with Admin(dead_settings, actor="test-admin") as a:
        yield a


async def kill(settings: Settings, store: Store, n: int) -> list[str]:
    """Make ``n`` jobs die and wait until their rows are stored."""
    async with Client(settings) as client:
        await client.declare_queue()
        ids = await client.enqueue_many(("rq.fragile", {"i": i}) for i in range(n))
    await wait_for(lambda: _dead_rows(store, n), what=f"{n} dead rows")
    return ids


async def test_a_requeued_job_runs_again_as_a_new_generation(
    dead_settings: Settings, store: Store, admin: Admin
) -> None:
    async with running(dead_settings):
        [job_id] = await kill(dead_settings, store, 1)
        healed.add(job_id)
        await admin.requeue_one(job_id, retries=4)
        await wait_for(lambda: len(runs[job_id]) == 2, what="the second run")
    assert runs[job_id][1][:2] == (1, 0)  # generation 1, fresh attempt count
    history = await admin.show(job_id)
    assert [(d.generation, d.status) for d in history] == [(0, "requeued")]
    assert history[0].status_changed_by == "test-admin"


async def test_a_thousand_concurrent_requeues_give_one_live_job(
    dead_settings: Settings, store: Store
) -> None:
    async with running(dead_settings):
        [job_id] = await kill(dead_settings, store, 1)
        healed.add(job_id)
        admins = [Admin(dead_settings, actor=f"admin-{i}") for i in range(4)]
        for a in admins:
            await a.__aenter__()
        try:
            results = await asyncio.gather(
                *(admins[i % 4].requeue(DeadFilter(ids=(job_id,))) for i in range(1000))
            )
        finally:
            for a in admins:
                await a.__aexit__(None, None, None)
        assert sum(results) == 1
        await wait_for(lambda: len(runs[job_id]) == 2, what="the requeued run")
        await asyncio.sleep(1.0)  # a second live copy would have run by now
    assert [gen for gen, _, _ in runs[job_id]] == [0, 1]


async def test_requeue_and_delete_at_once_give_one_outcome(
    dead_settings: Settings, store: Store, admin: Admin
) -> None:
    ids = await kill_without_worker(dead_settings, store, 40)
    results = await asyncio.gather(
        *(admin.requeue(DeadFilter(ids=(i,))) for i in ids),
        *(admin.delete(DeadFilter(ids=(i,))) for i in ids),
    )
    requeued, deleted = results[:40], results[40:]
    assert all(r + d == 1 for r, d in zip(requeued, deleted, strict=True))
    statuses = await store.pool.fetch("SELECT status FROM dead_letters")
    assert {s["status"] for s in statuses} <= {"requeued", "deleted"}
    assert sum(1 for s in statuses if s["status"] == "requeued") == sum(requeued)


async def kill_without_worker(settings: Settings, store: Store, n: int) -> list[str]:
    async with running(settings):
        return await kill(settings, store, n)


async def test_a_crash_after_staging_is_finished_by_the_relay_once(
    dead_settings: Settings, store: Store, admin: Admin
) -> None:
    """Crash point: the API committed the requeue and died before publishing it."""
    ids = await kill_without_worker(dead_settings, store, 30)
    row_ids = [r["id"] for r in await store.pool.fetch("SELECT id FROM dead_letters")]
    from engine.deadletters.generations import requeued_message

    staged = await store.stage_requeue(
        row_ids, "crashed-admin", lambda r: requeued_message(r, None, RequeueMode.RESTART)
    )
    assert staged == 30
    # A second, racing bulk requeue finds nothing left to move.
    assert await admin.requeue(DeadFilter(), retries=1) == 0
    for i in ids:
        healed.add(i)
    async with running(dead_settings):  # its relay publishes the staged rows
        await wait_for(lambda: all(len(runs.get(i, [])) == 2 for i in ids), what="30 requeued runs")
        await asyncio.sleep(1.0)
    assert all(len(runs[i]) == 2 for i in ids)
    statuses = {r["status"] for r in await store.pool.fetch("SELECT status FROM dead_letters")}
    assert statuses == {"requeued"}
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_bulk_requeue_by_filter_moves_only_matching_jobs_and_is_audited(
    dead_settings: Settings, store: Store, admin: Admin
) -> None:
    await kill_without_worker(dead_settings, store, 25)
    assert await admin.count(DeadFilter(error_text="GENERATION 0")) == 25
    assert await admin.requeue(DeadFilter(error_type="KeyError")) == 0
    seen: list[int] = []
    moved = await admin.requeue(DeadFilter(job_type="rq.fragile"), progress=seen.append)
    assert moved == 25 and seen[-1] == 25
    [entry, *_] = await admin.audit_log()
    assert (entry.action, entry.count, entry.actor) == ("requeue", 25, "test-admin")
    assert entry.selector["job_type"] == "rq.fragile"


async def test_a_rate_limited_bulk_requeue_of_jobs_that_die_again_moves_each_once(
    dead_settings: Settings, store: Store, admin: Admin
) -> None:
    async with running(dead_settings):
        ids = await kill(dead_settings, store, 30)
        selector = DeadFilter(job_type="rq.fragile")
        assert await admin.count(selector) == 30
        seen: list[int] = []
        # 20 a second: the first batch dies again (as new rows) while the walk waits.
        moved = await admin.requeue(selector, rate=20, progress=seen.append)
        await wait_for(lambda: _dead_rows(store, 60), what="the second deaths")
    assert moved == 30 and max(seen) == 30
    for job_id in ids:
        history = await admin.show(job_id)
        assert [(d.generation, d.status) for d in history] == [(0, "requeued"), (1, "dead")]
    [entry, *_] = await admin.audit_log()
    assert (entry.action, entry.count, entry.state) == ("requeue", 30, "done")


async def test_an_interrupted_bulk_requeue_leaves_an_audit_entry_saying_how_far_it_got(
    dead_settings: Settings, store: Store, admin: Admin
) -> None:
    await kill_without_worker(dead_settings, store, 5)
    task = asyncio.create_task(admin.requeue(DeadFilter(job_type="rq.fragile"), rate=1))

    async def started() -> bool:
        entries = await admin.audit_log()
        return bool(entries and entries[0].state == "running" and entries[0].count >= 1)

    await wait_for(started, what="the first batch")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [entry, *_] = await admin.audit_log()
    moved = await admin.count(DeadFilter(job_type="rq.fragile", status=None)) - await admin.count(
        DeadFilter(job_type="rq.fragile")
    )
    assert entry.state == "interrupted" and entry.finished_at is not None
    assert entry.count == moved and 1 <= moved < 5
