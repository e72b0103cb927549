"""A death decided by one copy of a job must be stored whichever copy carries it out.

Found by the chaos run (bench/chaos.py): a tracked job's DEAD state is written before its
dead-letter row, so a worker killed in between leaves a job row DEAD, no dead letter and
its message unacked. The copy that comes back is normally refused its claim and stores
the dead letter from the row (test_worker_stores.py). But a claim PostgreSQL drops is
granted (availability first): that copy runs again, dies again, and its own DEAD report
is refused against the row its predecessor wrote. That refusal must not be taken for
"another copy ended it": the copy that wrote DEAD is gone, and nobody else stores the row.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from engine import Client, JobContext, Permanent, RetryPolicy, handler
from engine.amqp.topology import retained_queue, work_queue
from engine.pg.store import Store
from engine.settings import Settings
from engine.states import JobState
from engine.worker.settler import Settler
from tests.conftest import queue_depth, wait_for
from tests.integration.deadletters.test_recording import running

runs: dict[str, int] = {}

# Columns of a tracker row (engine.worker.tracker.Transition.row) read here.
REDELIVERIES, STATE = 3, 6


@handler("lost.doomed", policy=RetryPolicy(attempts=1, max_retries=0))
async def doomed(ctx: JobContext) -> None:
    runs[ctx.job_id] = runs.get(ctx.job_id, 0) + 1
    raise Permanent(f"job {ctx.job_id} dies on purpose")


@handler(
    "lost.changing",
    policy=RetryPolicy(attempts=1, max_retries=1, transient=(ConnectionError,)),
)
async def changing(ctx: JobContext) -> None:
    """Dies for good on its first run; a copy that runs again fails transiently."""
    runs[ctx.job_id] = runs.get(ctx.job_id, 0) + 1
    if runs[ctx.job_id] == 1:
        raise Permanent(f"job {ctx.job_id} dies on purpose")
    raise ConnectionError(f"job {ctx.job_id}: the service is away this time")


async def dead_rows(store: Store, job_id: str) -> int:
    return int(
        await store.pool.fetchval("SELECT count(*) FROM dead_letters WHERE job_id = $1", job_id)
    )


async def dead_jobs_without_one_row(store: Store) -> list[tuple[str, int]]:
    """Jobs whose row says DEAD and whose generation has not exactly one dead letter."""
    rows = await store.pool.fetch(
        "SELECT j.job_id, count(d.id) AS n FROM jobs j"
        " LEFT JOIN dead_letters d ON d.job_id = j.job_id AND d.generation = j.generation"
        " WHERE j.state = 'dead' GROUP BY j.job_id HAVING count(d.id) <> 1"
    )
    return [(r["job_id"], r["n"]) for r in rows]


@pytest.mark.parametrize("job_type", ["lost.doomed", "lost.changing"])
async def test_a_copy_that_runs_again_after_its_predecessor_decided_dead_stores_the_row(
    dead_settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch, job_type: str
) -> None:
    """1. The job runs and dies; its DEAD state is written; the worker stops before the
    dead letter's row (as a SIGKILL there would leave it). 2. The message comes back,
    counted; the claim of that copy is lost with its connection (a backend terminated
    mid-statement), so it runs (availability first) and dies again. 3. Its DEAD report is
    refused: the row holds the first copy's DEAD. The job must still end with exactly one
    dead-letter row and a copy on the broker. ``lost.changing``'s second run fails
    transiently: its retry is refused against the DEAD row, and must not be acked as if
    another copy had carried the death out."""
    ns = dead_settings.namespace
    real_store_death = Settler.store_death
    real_report = Store.report
    stops, cuts = [1], [1]

    async def stop_before_the_row(self: Settler, *args: Any) -> bool:
        if stops:
            stops.pop()
            raise RuntimeError("the worker stops after DEAD, before the row (on purpose)")
        return await real_store_death(self, *args)

    async def lose_the_counted_claim(self: Store, rows: Any) -> set[tuple[str, int]]:
        counted_claim = any(
            r[STATE] == JobState.RUNNING.value and r[REDELIVERIES] >= 1 for r in rows
        )
        if cuts and counted_claim:
            cuts.pop()
            raise asyncpg.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation: terminating connection "
                "due to administrator command (on purpose)"
            )
        return await real_report(self, rows)

    monkeypatch.setattr(Settler, "store_death", stop_before_the_row)
    monkeypatch.setattr(Store, "report", lose_the_counted_claim)
    async with running(dead_settings, record=False, store=True), Client(dead_settings) as client:
        job_id = await client.enqueue(job_type, {"n": 1})
        await wait_for(lambda: runs.get(job_id) == 2, what="the counted copy's run")
        await wait_for(
            lambda: _has_row(store, job_id),
            timeout=10,
            what="the dead letter of a job whose DEAD state another copy wrote",
        )
        await wait_for(lambda: _depth_is(retained_queue(ns), 1), what="the dead letter's copy")
        await wait_for(lambda: _depth_is(work_queue(ns, "default"), 0), what="the job acked")
    assert not stops and not cuts  # both faults happened where they were meant to
    assert await dead_rows(store, job_id) == 1
    job = await store.get_job(job_id)
    assert job is not None and job["state"] == "dead"
    assert await dead_jobs_without_one_row(store) == []


async def _has_row(store: Store, job_id: str) -> bool:
    return await dead_rows(store, job_id) >= 1


async def _depth_is(name: str, expected: int) -> bool:
    return await queue_depth(name) == expected
