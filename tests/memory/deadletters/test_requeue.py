"""Moving dead jobs back: one live job per requeue however many callers race. The
engine's rules of tests/integration/deadletters/test_requeue.py on the doubles (the
row locks under SQL concurrency stay pinned there and by tests/contract)."""

from __future__ import annotations

import asyncio

import pytest

from engine import JobContext, JobNotFound, JobStateConflict, RetryPolicy
from engine.admin.facade import Admin
from engine.deadletters.generations import requeued_message
from engine.filters import DeadFilter
from engine.message import JobMessage
from engine.states import RequeueMode
from engine.testing import Lazarus
from tests.memory.helpers import until


class Fragile:
    """``rq.fragile``: fails until its job is healed; notes (generation, attempt,
    checkpoint) per run."""

    def __init__(self, lz: Lazarus) -> None:
        self.lz = lz
        self.runs: dict[str, list[tuple[int, int, object]]] = {}
        self.healed: set[str] = set()

        @lz.handler("rq.fragile", policy=RetryPolicy(attempts=1, max_retries=0))
        async def fragile(ctx: JobContext) -> None:
            self.runs.setdefault(ctx.job_id, []).append(
                (ctx.message.generation, ctx.attempt, ctx.checkpoint_state)
            )
            if ctx.job_id not in self.healed:
                raise RuntimeError(f"generation {ctx.message.generation} fails")

    async def kill(self, n: int) -> list[str]:
        """Make ``n`` jobs die; their rows are stored once this returns."""
        ids = await self.lz.client.enqueue_many(("rq.fragile", {"i": i}) for i in range(n))
        await self.lz.drain()
        assert len(self.lz.store.dead_letters) >= n
        return ids


@pytest.fixture
def fragile(lz: Lazarus) -> Fragile:
    return Fragile(lz)


def statuses(lz: Lazarus) -> list[str]:
    return [str(r["status"]) for r in lz.store.dead_letters.values()]


async def test_a_requeued_job_runs_again_as_a_new_generation(lz: Lazarus, fragile: Fragile) -> None:
    """Rule: a requeue runs the job as generation + 1 with a fresh attempt count, and
    marks its dead letter requeued by whoever asked."""
    [job_id] = await fragile.kill(1)
    fragile.healed.add(job_id)
    await lz.admin.requeue_one(job_id, retries=4)
    await lz.drain()
    assert len(fragile.runs[job_id]) == 2
    assert fragile.runs[job_id][1][:2] == (1, 0)
    history = await lz.admin.show(job_id)
    assert [(d.generation, d.status) for d in history] == [(0, "requeued")]
    assert history[0].status_changed_by == "test"


async def test_a_job_that_dies_again_gets_a_row_per_generation(
    lz: Lazarus, fragile: Fragile
) -> None:
    """Rule: dead letters are per (job, generation): a second death is a second row."""
    [job_id] = await fragile.kill(1)
    assert await lz.admin.requeue(DeadFilter(ids=(job_id,))) == 1
    await lz.drain()
    history = await lz.admin.show(job_id)
    assert [(d.generation, d.status) for d in history] == [(0, "requeued"), (1, "dead")]
    assert "generation 1 fails" in history[1].error_message


async def test_a_thousand_concurrent_requeues_give_one_live_job(
    lz: Lazarus, fragile: Fragile
) -> None:
    """Rule: a requeue moves a dead letter only while it is dead: of a thousand racing
    requeues by four admins one moves it, and one copy runs."""
    [job_id] = await fragile.kill(1)
    fragile.healed.add(job_id)
    admins = [
        Admin.over(lz.store, lz.broker, settings=lz.settings, actor=f"admin-{i}") for i in range(4)
    ]
    results = await asyncio.gather(
        *(admins[i % 4].requeue(DeadFilter(ids=(job_id,))) for i in range(1000))
    )
    assert sum(results) == 1
    await lz.drain()
    assert [gen for gen, _, _ in fragile.runs[job_id]] == [0, 1]


async def test_requeue_and_delete_at_once_give_one_outcome(lz: Lazarus, fragile: Fragile) -> None:
    """Rule: requeue and delete each move only a dead row: racing, one of them wins."""
    ids = await fragile.kill(40)
    admin = lz.admin
    results = await asyncio.gather(
        *(admin.requeue(DeadFilter(ids=(i,))) for i in ids),
        *(admin.delete(DeadFilter(ids=(i,))) for i in ids),
    )
    requeued, deleted = results[:40], results[40:]
    assert all(r + d == 1 for r, d in zip(requeued, deleted, strict=True))
    assert set(statuses(lz)) <= {"requeued", "deleted"}
    assert statuses(lz).count("requeued") == sum(requeued)


async def test_a_crash_after_staging_is_finished_by_the_relay_once(
    lz: Lazarus, fragile: Fragile
) -> None:
    """Rule (crash point): a requeue committed to the outbox and never published is
    published by the relay, once; a racing requeue finds nothing left to move."""
    ids = await fragile.kill(30)
    fragile.healed.update(ids)
    row_ids = list(lz.store.dead_letters)
    staged = await lz.store.stage_requeue(
        row_ids, "crashed-admin", lambda r: requeued_message(r, None, RequeueMode.RESTART)
    )
    assert staged == 30
    assert await lz.admin.requeue(DeadFilter(), retries=1) == 0
    await lz.drain()  # its relay publishes the staged rows
    assert all(len(fragile.runs[i]) == 2 for i in ids)
    assert set(statuses(lz)) == {"requeued"}
    assert lz.store.outbox == {}


async def test_recover_mode_keeps_the_checkpoint_and_restart_clears_it(
    lz: Lazarus, fragile: Fragile
) -> None:
    """Rule: RECOVER hands the next generation the dead job's checkpoint; RESTART none."""
    job_ids = ["recover-me", "restart-me"]
    for job_id in job_ids:
        message = JobMessage(type="rq.fragile", payload={}, id=job_id, checkpoint={"item": 60})
        await lz.client.publish_message(message)
    await lz.drain()
    assert len(lz.store.dead_letters) == 2
    fragile.healed.update(job_ids)
    await lz.admin.requeue_one(job_ids[0], mode=RequeueMode.RECOVER)
    await lz.admin.requeue_one(job_ids[1], mode=RequeueMode.RESTART)
    await lz.drain()
    assert fragile.runs[job_ids[0]][1][2] == {"item": 60}
    assert fragile.runs[job_ids[1]][1][2] is None


async def test_requeue_of_an_unknown_or_moved_job_says_why(lz: Lazarus, fragile: Fragile) -> None:
    """Rule: a requeue of no dead letter, or of one no longer dead, says which."""
    with pytest.raises(JobNotFound, match="no dead letter for job 'nope'"):
        await lz.admin.requeue_one("nope")
    [job_id] = await fragile.kill(1)
    await lz.admin.delete_one(job_id)
    with pytest.raises(JobStateConflict, match="no longer dead"):
        await lz.admin.requeue_one(job_id)


async def test_bulk_requeue_by_filter_moves_only_matching_jobs_and_is_audited(
    lz: Lazarus, fragile: Fragile
) -> None:
    """Rule: a bulk requeue moves what its filter matches, reports progress, is audited."""
    await fragile.kill(25)
    admin = lz.admin
    assert await admin.count(DeadFilter(error_text="GENERATION 0")) == 25
    assert await admin.requeue(DeadFilter(error_type="KeyError")) == 0
    seen: list[int] = []
    moved = await admin.requeue(DeadFilter(job_type="rq.fragile"), progress=seen.append)
    assert moved == 25 and seen[-1] == 25
    [entry, *_] = await admin.audit_log()
    assert (entry.action, entry.count, entry.actor) == ("requeue", 25, "test")
    assert entry.selector["job_type"] == "rq.fragile"


async def test_a_rate_limited_bulk_requeue_of_jobs_that_die_again_moves_each_once(
    lz: Lazarus, fragile: Fragile
) -> None:
    """Rule: a bulk requeue walks the rows that matched when it began: jobs that die
    again meanwhile (new rows) are not moved a second time."""
    ids = await fragile.kill(30)
    admin = lz.admin
    selector = DeadFilter(job_type="rq.fragile")
    assert await admin.count(selector) == 30
    seen: list[int] = []
    # 20 a second: the first batch dies again (as new rows) while the walk waits.
    moved = await admin.requeue(selector, rate=20, progress=seen.append)
    await lz.drain()
    assert len(lz.store.dead_letters) == 60
    assert moved == 30 and max(seen) == 30
    for job_id in ids:
        history = await admin.show(job_id)
        assert [(d.generation, d.status) for d in history] == [(0, "requeued"), (1, "dead")]
    [entry, *_] = await admin.audit_log()
    assert (entry.action, entry.count, entry.state) == ("requeue", 30, "done")


async def test_an_interrupted_bulk_requeue_leaves_an_audit_entry_saying_how_far_it_got(
    lz: Lazarus, fragile: Fragile
) -> None:
    """Rule: a bulk requeue cancelled midway leaves its audit entry interrupted, with
    the count it moved."""
    await fragile.kill(5)
    admin = lz.admin
    task = asyncio.create_task(admin.requeue(DeadFilter(job_type="rq.fragile"), rate=1))

    async def started() -> bool:
        entries = await admin.audit_log()
        return bool(entries and entries[0].state == "running" and entries[0].count >= 1)

    await until(started, what="the first batch")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [entry, *_] = await admin.audit_log()
    moved = await admin.count(DeadFilter(job_type="rq.fragile", status=None)) - await admin.count(
        DeadFilter(job_type="rq.fragile")
    )
    assert entry.state == "interrupted" and entry.finished_at is not None
    assert entry.count == moved and 1 <= moved < 5
