"""engine.testing's enqueue_if_absent: one job per unique key, on the in-memory store."""

from __future__ import annotations

import pytest

from engine import JobContext, Permanent, RetryPolicy
from engine.states import JobState
from engine.testing import Lazarus
from tests.unit.test_testing import NOWHERE


@pytest.fixture
async def harness() -> Lazarus:  # type: ignore[misc]
    async with Lazarus(settings=NOWHERE) as lazarus:
        yield lazarus


async def test_a_key_gives_one_job_until_it_succeeds(harness: Lazarus) -> None:
    runs: list[str] = []

    @harness.handler("digest")
    async def digest(ctx: JobContext) -> None:
        runs.append(ctx.job_id)

    first = await harness.enqueue_if_absent("digest", {"user": 7}, key="digest:7")
    second = await harness.enqueue_if_absent("digest", {"user": 7}, key="digest:7")
    assert (first.created, second.created, second.job_id, second.state) == (
        True, False, first.job_id, JobState.PENDING,
    )  # fmt: skip
    await harness.drain()
    assert runs == [first.job_id]
    assert (await harness.job(first.job_id)).state == JobState.SUCCEEDED
    third = await harness.enqueue_if_absent("digest", {"user": 7}, key="digest:7")
    assert third.created and third.job_id != first.job_id
    await harness.drain()
    assert runs == [first.job_id, third.job_id]


async def test_a_dead_job_keeps_its_key_through_a_requeue(harness: Lazarus) -> None:
    @harness.handler("sync", policy=RetryPolicy(attempts=1, max_retries=0))
    async def sync(ctx: JobContext) -> None:
        if ctx.message.generation == 0:
            raise Permanent("upstream refused")

    job = await harness.enqueue_if_absent("sync", key="sync:a")
    await harness.drain()
    assert (await harness.job(job.job_id)).state == JobState.DEAD
    dead = await harness.enqueue_if_absent("sync", key="sync:a")
    assert (dead.job_id, dead.created, dead.state) == (job.job_id, False, JobState.DEAD)
    await harness.requeue(job.job_id)
    pending = await harness.enqueue_if_absent("sync", key="sync:a")
    assert (pending.job_id, pending.created, pending.state) == (
        job.job_id, False, JobState.PENDING,
    )  # fmt: skip
    await harness.drain()
    assert (await harness.job(job.job_id)).state == JobState.SUCCEEDED
    assert (await harness.enqueue_if_absent("sync", key="sync:a")).created


async def test_a_delayed_job_under_a_key_waits_its_delay(harness: Lazarus) -> None:
    @harness.handler("later")
    async def later(ctx: JobContext) -> None:
        pass

    job = await harness.enqueue_if_absent("later", key="later:1", delay=60)
    drained = await harness.drain()
    assert drained.delays_skipped == 1 and drained.virtual_seconds >= 59
    assert (await harness.job(job.job_id)).state == JobState.SUCCEEDED


async def test_an_untracked_type_cannot_take_a_key(harness: Lazarus) -> None:
    @harness.handler("fire", track=False)
    async def fire(ctx: JobContext) -> None:
        pass

    with pytest.raises(ValueError, match="track=False"):
        await harness.enqueue_if_absent("fire", key="k")


async def test_a_publish_that_fails_after_the_commit_leaves_the_job_to_the_relay(
    harness: Lazarus,
) -> None:
    runs: list[str] = []

    @harness.handler("flaky.publish")
    async def job(ctx: JobContext) -> None:
        runs.append(ctx.job_id)

    allow = harness.broker.refuse(lambda published: True)
    created = await harness.enqueue_if_absent("flaky.publish", key="p:1")
    assert created.created  # committed: the outbox holds its message
    assert [r["kind"] for r in harness.store.outbox.values()] == ["enqueue"]
    again = await harness.enqueue_if_absent("flaky.publish", key="p:1")
    assert (again.job_id, again.created) == (created.job_id, False)
    allow()
    await harness.drain()  # the relay's pass
    assert runs == [created.job_id]
    assert harness.store.outbox == {}
