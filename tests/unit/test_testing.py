"""engine.testing: handlers run through the real engine on the in-memory broker and store.

The settings name ports where nothing listens: a harness that reached for RabbitMQ or
PostgreSQL would fail here instead of passing by luck on a machine that has them.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from engine import JobContext, Permanent, RetryPolicy, Transient
from engine.errors import JobNotFound, JobStateConflict
from engine.settings import Settings
from engine.states import DeadStatus, JobState, RequeueMode
from engine.testing import DrainTimeout, Lazarus

NOWHERE = Settings(
    amqp_url="amqp://guest:guest@127.0.0.1:1/",  # type: ignore[arg-type]
    database_url="postgresql://nobody@127.0.0.1:1/none",  # type: ignore[arg-type]
    connect_timeout=0.2,
    unknown_type_grace=0,
)


@pytest.fixture
async def harness() -> Lazarus:  # type: ignore[misc]
    async with Lazarus(settings=NOWHERE) as lazarus:
        yield lazarus


async def test_a_charge_that_died_succeeds_once_requeued(harness: Lazarus) -> None:
    runs: list[tuple[int, int]] = []

    @harness.handler("charge", policy=RetryPolicy(attempts=1, max_retries=2, retry_delay=60))
    async def charge(ctx: JobContext) -> None:
        runs.append((ctx.message.generation, ctx.message.attempt))
        if ctx.message.generation == 0:
            raise Transient("card service down")

    job_id = await harness.enqueue("charge", {"amount": 5})
    drained = await harness.drain()
    assert drained.delays_skipped == 2
    assert drained.virtual_seconds >= 60 + 120 - 20  # the policy's waits, with jitter
    [death] = await harness.dead_letters(job_id)
    assert (death.reason, death.error_type) == ("retries exhausted", "engine.errors.Transient")
    assert (await harness.job(job_id)).state == JobState.DEAD
    assert len(harness.retained()) == 1

    await harness.requeue(job_id, retries=0)
    await harness.drain()
    assert runs == [(0, 0), (0, 1), (0, 2), (1, 0)]
    job = await harness.job(job_id)
    assert (job.state, job.generation) == (JobState.SUCCEEDED, 1)
    assert [d.status for d in await harness.dead_letters(job_id)] == [DeadStatus.REQUEUED]


async def test_every_failed_attempt_is_kept_with_its_error(harness: Lazarus) -> None:
    @harness.handler("charge", policy=RetryPolicy(attempts=1, max_retries=2, retry_delay=60))
    async def charge(ctx: JobContext) -> None:
        if ctx.message.generation == 0:
            raise Transient(f"card service down ({ctx.message.attempt})")

    job_id = await harness.enqueue("charge")
    await harness.drain()
    await harness.requeue(job_id, retries=0)
    await harness.drain()
    attempts = await harness.admin.jobs.attempts(job_id)
    assert [(a.generation, a.attempt, a.outcome) for a in attempts] == [
        (0, 0, "retrying"), (0, 1, "retrying"), (0, 2, "dead"),
    ]  # fmt: skip
    assert [a.error_message for a in attempts] == [f"card service down ({i})" for i in range(3)]
    assert {a.error_type for a in attempts} == {"engine.errors.Transient"}
    assert all("card service down" in a.traceback for a in attempts)
    assert attempts[0].at <= attempts[1].at <= attempts[2].at
    assert await harness.admin.jobs.attempts("no-such-job") == []


async def test_recover_resumes_from_the_last_checkpoint(harness: Lazarus) -> None:
    seen: list[object] = []

    @harness.handler("import_rows", policy=RetryPolicy(attempts=1, max_retries=0))
    async def import_rows(ctx: JobContext) -> None:
        seen.append(ctx.checkpoint_state)
        await ctx.checkpoint({"row": 500})
        if ctx.message.generation == 0:
            raise Permanent("row 501 is malformed")

    job_id = await harness.enqueue("import_rows")
    await harness.drain()
    await harness.recover(job_id)
    await harness.drain()
    assert seen == [None, {"row": 500}]
    assert (await harness.job(job_id)).state == JobState.SUCCEEDED


async def test_a_requeue_of_a_job_that_is_not_dead_is_refused(harness: Lazarus) -> None:
    @harness.handler("fine")
    async def fine(ctx: JobContext) -> None:
        return None

    job_id = await harness.enqueue("fine")
    await harness.drain()
    with pytest.raises(JobNotFound, match=f"no dead letter for job {job_id!r}"):
        await harness.requeue(job_id)
    assert (await harness.job(job_id)).state == JobState.SUCCEEDED


async def test_a_payload_json_cannot_carry_fails_at_enqueue_as_in_production(
    harness: Lazarus,
) -> None:
    @harness.handler("odd")
    async def odd(ctx: JobContext) -> None:
        return None

    with pytest.raises(TypeError, match="not JSON serializable"):
        await harness.enqueue("odd", {"when": object()})


async def test_bytes_from_a_foreign_producer_and_malformed_ones(harness: Lazarus) -> None:
    done: list[object] = []

    @harness.handler("greet")
    async def greet(ctx: JobContext) -> None:
        done.append(ctx.payload)

    await harness.publish_raw(orjson.dumps({"type": "greet", "id": "g-1", "payload": "hi"}))
    await harness.publish_raw(b"{not json", message_id="broken-1")
    await harness.drain()
    assert done == ["hi"]
    [malformed] = await harness.dead_letters("broken-1")
    assert malformed.reason == "malformed message"


async def test_a_suspended_job_keeps_its_checkpoint_and_resumes(harness: Lazarus) -> None:
    @harness.handler("report", policy=RetryPolicy(attempts=1), suspend_on_failure=True)
    async def report(ctx: JobContext) -> None:
        if ctx.message.generation == 0:
            await ctx.checkpoint({"page": 3})
            raise Permanent("printer offline")

    job_id = await harness.enqueue("report")
    await harness.drain()
    job = await harness.job(job_id)
    assert (job.state, job.checkpoint) == (JobState.SUSPENDED, {"page": 3})
    assert await harness.dead_letters(job_id) == []
    await harness.resume(job_id, mode=RequeueMode.RECOVER)
    await harness.drain()
    assert (await harness.job(job_id)).state == JobState.SUCCEEDED
    with pytest.raises(JobStateConflict):
        await harness.resume(job_id)


async def test_skip_delays_off_leaves_the_retry_waiting_until_the_clock_moves(
    harness: Lazarus,
) -> None:
    tries: list[int] = []

    @harness.handler("flaky", policy=RetryPolicy(attempts=1, max_retries=1, retry_delay=30))
    async def flaky(ctx: JobContext) -> None:
        tries.append(ctx.message.attempt)
        if ctx.message.attempt == 0:
            raise Transient("later")

    job_id = await harness.enqueue("flaky")
    await harness.drain(skip_delays=False)
    assert (await harness.job(job_id)).state == JobState.RETRYING
    await harness.advance(40)
    await harness.drain(skip_delays=False)
    assert tries == [0, 1]
    assert (await harness.job(job_id)).state == JobState.SUCCEEDED


async def test_the_fixture_is_there_and_cleans_up_its_handlers(lazarus: Lazarus) -> None:
    @lazarus.handler("only_here")
    async def only_here(ctx: JobContext) -> None:
        return None

    job_id = await lazarus.enqueue("only_here")
    await lazarus.drain()
    assert (await lazarus.job(job_id)).state == JobState.SUCCEEDED


async def test_a_drain_that_times_out_names_the_jobs_still_running(harness: Lazarus) -> None:
    release = asyncio.Event()

    @harness.handler("slow")
    async def slow(ctx: JobContext) -> None:
        await release.wait()

    job_id = await harness.enqueue("slow", job_id="slow-1")
    with pytest.raises(DrainTimeout, match=f"jobs still running: {job_id}"):
        await harness.drain(timeout=0.3)
    release.set()
    await harness.drain()
    assert (await harness.job(job_id)).state == JobState.SUCCEEDED
