"""Job states, checkpoints, suspension and pauses on the in-memory broker and store.

The engine's rules of tests/integration/lifecycle/test_states.py; SQL concurrency of the
compare-and-set rows stays pinned there and by tests/contract/test_store.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine import JobContext, JobStateConflict, Permanent, RetryPolicy
from engine.admin.lifecycle import REQUESTED_BY_USER
from engine.amqp.topology import work_queue
from engine.message import JobMessage
from engine.states import JobState, RequeueMode
from engine.testing import Lazarus
from engine.worker.consume import Worker
from tests.memory.helpers import until


async def state_is(lz: Lazarus, job_id: str, state: str) -> bool:
    try:
        return bool((await lz.job(job_id)).state == state)
    except Exception:
        return False


class Gates:
    """Handlers that wait for a test to let them go."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}
        self.started: set[str] = set()

    def gate(self, job_id: str) -> asyncio.Event:
        return self.events.setdefault(job_id, asyncio.Event())


def register_gated(lz: Lazarus, gates: Gates, processed: dict[str, list[int]]) -> None:
    @lz.handler("gated", policy=RetryPolicy(attempts=1, max_retries=0))
    async def gated(ctx: JobContext) -> None:
        gates.started.add(ctx.job_id)
        await ctx.checkpoint({"step": 1})
        await gates.gate(ctx.job_id).wait()
        if (ctx.payload or {}).get("fail"):
            raise Permanent("failed after the gate")
        processed.setdefault(ctx.job_id, []).append(ctx.message.generation)


def register_slow_retry(lz: Lazarus, processed: dict[str, list[int]]) -> None:
    @lz.handler("slow_retry", policy=RetryPolicy(attempts=1, max_retries=3, retry_delay=1.5))
    async def slow_retry(ctx: JobContext) -> None:
        processed.setdefault(ctx.job_id, []).append(ctx.message.generation)
        if ctx.message.generation == 0:
            raise RuntimeError("retry me later")


def register_fragile(lz: Lazarus, processed: dict[str, list[int]]) -> None:
    @lz.handler(
        "fragile",
        policy=RetryPolicy(attempts=1, max_retries=1, retry_delay=0.2),
        suspend_on_failure=True,
    )
    async def fragile(ctx: JobContext) -> None:
        await ctx.checkpoint({"seen": ctx.payload})
        if not (ctx.payload or {}).get("fixed"):
            raise ValueError(f"bad input {ctx.payload!r}")
        processed.setdefault(ctx.job_id, []).append(ctx.message.generation)


async def test_a_job_is_tracked_from_running_to_succeeded(lz: Lazarus) -> None:
    """Rule: a run is claimed (running, started_at, attempt) and its success recorded."""
    states: list[str] = []

    @lz.handler("ok")
    async def ok(ctx: JobContext) -> None:
        states.append(str((await lz.job(ctx.job_id)).state))

    job_id = await lz.enqueue("ok", {"x": 1})
    await lz.drain()
    job = await lz.job(job_id)
    assert states == ["running"]
    assert job.state == JobState.SUCCEEDED
    assert job.payload == {"x": 1} and job.attempt == 0 and job.started_at is not None


async def test_a_retrying_job_shows_retrying_then_dead(lz: Lazarus) -> None:
    """Rule: a broker retry leaves the row retrying (with the error) until the next run;
    spent retries leave it dead with the last attempt."""
    processed: dict[str, list[int]] = {}
    register_slow_retry(lz, processed)
    job_id = await lz.enqueue("slow_retry", None, max_retries=1)
    await lz.drain(skip_delays=False)
    assert (await lz.job(job_id)).state == JobState.RETRYING
    await lz.drain()
    job = await lz.job(job_id)
    assert job.state == JobState.DEAD
    assert job.error_type == "RuntimeError" and job.attempt == 1


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (RequeueMode.RECOVER, list(range(60)) + list(range(60, 100))),
        (RequeueMode.RESTART, list(range(60)) + list(range(100))),
    ],
)
async def test_recover_continues_from_the_checkpoint_and_restart_starts_over(
    lz: Lazarus, mode: RequeueMode, expected: list[int]
) -> None:
    """Rule: a RECOVER requeue hands the handler its last checkpoint; RESTART none."""
    done: list[int] = []
    fail_at = [60]

    @lz.handler("items", policy=RetryPolicy(attempts=1, max_retries=0))
    async def items(ctx: JobContext) -> None:
        start = (ctx.checkpoint_state or {}).get("next", 0)
        for i in range(start, 100):
            if fail_at and fail_at[0] == i:
                fail_at.clear()
                raise RuntimeError(f"item {i} is broken")
            done.append(i)
            await ctx.checkpoint({"next": i + 1})

    job_id = await lz.enqueue("items")
    await lz.drain()
    assert (await lz.job(job_id)).state == JobState.DEAD
    await lz.requeue(job_id, mode=mode)
    await lz.drain()
    assert (await lz.job(job_id)).state == JobState.SUCCEEDED
    assert done == expected


async def test_suspend_on_failure_keeps_payload_and_checkpoint_with_its_cause(
    lz: Lazarus,
) -> None:
    """Rule: suspend_on_failure turns a death into a suspension (no dead letter) that
    keeps the checkpoint and the error's cause; a resume with a new payload runs it as
    the next generation."""
    processed: dict[str, list[int]] = {}
    register_fragile(lz, processed)
    job_id = await lz.enqueue("fragile", {"fixed": False})
    await lz.drain()
    assert (await lz.job(job_id)).state == JobState.SUSPENDED
    cause = await lz.admin.jobs.cause(job_id)
    assert cause.cause.startswith("ValueError: bad input")
    assert "Traceback" in cause.traceback
    assert await lz.dead_letters(job_id) == []
    assert (await lz.job(job_id)).checkpoint == {"seen": {"fixed": False}}
    await lz.admin.jobs.resume(job_id, payload={"fixed": True}, replace_payload=True)
    await lz.drain()
    assert (await lz.job(job_id)).state == JobState.SUCCEEDED
    assert processed[job_id] == [1]


async def test_suspend_at_enqueue_overrides_the_job_type(lz: Lazarus) -> None:
    """Rule: suspend_on_failure given at enqueue wins over the handler's."""
    register_fragile(lz, {})
    job_id = await lz.enqueue("fragile", {}, suspend_on_failure=False)
    await lz.drain()
    assert (await lz.job(job_id)).state == JobState.DEAD
    assert len(await lz.dead_letters(job_id)) == 1


async def test_a_person_suspends_a_running_job_and_resumes_it(lz: Lazarus) -> None:
    """Rule: suspending a running job cancels its run (it does not finish) and a RECOVER
    resume runs it again as generation 1."""
    gates, processed = Gates(), {}
    register_gated(lz, gates, processed)
    job_id = await lz.enqueue("gated", None)
    await until(lambda: state_is(lz, job_id, "running"), what="running")
    await lz.suspend(job_id)
    cause = await lz.admin.jobs.cause(job_id)
    assert cause.cause == REQUESTED_BY_USER and cause.traceback is None
    await lz.drain()  # the worker cancels the run within its control interval
    gates.gate(job_id).set()
    await asyncio.sleep(0.05)
    assert job_id not in processed
    assert (await lz.job(job_id)).state == JobState.SUSPENDED
    gates.events.pop(job_id)
    gates.gate(job_id).set()
    resumed = await lz.resume(job_id, mode=RequeueMode.RECOVER)
    assert resumed.generation == 1
    await lz.drain()
    assert (await lz.job(job_id)).state == JobState.SUCCEEDED
    assert processed[job_id] == [1]


async def test_a_failure_after_a_person_suspended_does_not_overwrite_it(lz: Lazarus) -> None:
    """Rule: a job a person holds keeps their suspension when its run then fails: no dead
    letter, their reason and name stay."""
    gates: Gates = Gates()
    register_gated(lz, gates, {})
    job_id = await lz.enqueue("gated", {"fail": True})
    await until(lambda: state_is(lz, job_id, "running"), what="running")
    await lz.suspend(job_id, "maintenance")
    gates.gate(job_id).set()  # fails at once, racing the worker's poll
    await lz.drain()
    job = await lz.job(job_id)
    assert (job.state, job.cause, job.stopped_by) == (
        "suspended",
        f"{REQUESTED_BY_USER}: maintenance",
        "test",
    )
    assert await lz.dead_letters(job_id) == []


async def test_a_retrying_job_suspended_then_resumed_runs_once(lz: Lazarus) -> None:
    """Rule: a resume makes a new generation; the stale delayed copy of the old one is
    dropped when it comes back."""
    processed: dict[str, list[int]] = {}
    register_slow_retry(lz, processed)
    job_id = await lz.enqueue("slow_retry", None)
    await lz.drain(skip_delays=False)
    assert (await lz.job(job_id)).state == JobState.RETRYING
    await lz.suspend(job_id)
    await lz.resume(job_id)  # before the 1.5 s delay copy comes back
    await lz.drain(skip_delays=False)
    assert (await lz.job(job_id)).state == JobState.SUCCEEDED
    drained = await lz.drain()  # the stale delayed copy arrives and must be dropped
    assert drained.delays_skipped == 1
    assert processed[job_id] == [0, 1]
    assert (await lz.job(job_id)).state == JobState.SUCCEEDED


async def test_a_person_suspending_a_failed_job_shows_their_reason_not_the_error(
    lz: Lazarus,
) -> None:
    """Rule: the cause of a person's suspension is theirs; the last error is not shown."""
    register_slow_retry(lz, {})
    job_id = await lz.enqueue("slow_retry", None)
    await lz.drain(skip_delays=False)
    assert (await lz.job(job_id)).error_type == "RuntimeError"
    await lz.suspend(job_id, "checking the provider")
    cause = await lz.admin.jobs.cause(job_id)
    await lz.cancel(job_id)
    assert cause.cause == f"{REQUESTED_BY_USER}: checking the provider"
    assert (cause.error_type, cause.traceback, cause.stopped_by) == (None, None, "test")


async def test_a_failure_after_a_person_resumed_shows_its_traceback(lz: Lazarus) -> None:
    """Rule: a suspension by failure after a person's resume shows the error, not them."""
    register_fragile(lz, {})
    job_id = await lz.enqueue("fragile", {"fixed": False})
    await lz.drain()
    assert (await lz.job(job_id)).state == JobState.SUSPENDED
    await lz.admin.jobs.resume(job_id)
    await lz.drain()
    job = await lz.job(job_id)
    assert (job.state, job.generation) == ("suspended", 1)
    cause = await lz.admin.jobs.cause(job_id)
    assert cause.cause.startswith("ValueError: bad input")
    assert cause.error_type == "ValueError" and "Traceback" in cause.traceback
    assert cause.stopped_by is None


async def test_concurrent_resume_and_cancel_give_one_winner(lz: Lazarus) -> None:
    """Rule: resume and cancel are compare-and-set on the generation a person saw: of
    forty concurrent calls one wins, the others are told the job is no longer so."""
    gates: Gates = Gates()
    register_gated(lz, gates, {})
    job_id = await lz.enqueue("gated", None)
    await until(lambda: state_is(lz, job_id, "running"), what="running")
    seen = await lz.suspend(job_id)
    control = lz.admin.jobs
    calls: list[Any] = [control.resume(job_id, generation=seen.generation) for _ in range(20)]
    calls += [control.cancel(job_id, generation=seen.generation) for _ in range(20)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    gates.gate(job_id).set()
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(e, JobStateConflict) and "no longer" in str(e) for e in losers)
    await lz.drain()


async def test_the_cause_of_a_job_that_is_not_suspended_is_an_error(lz: Lazarus) -> None:
    """Rule: cause and resume need a suspended job."""

    @lz.handler("ok")
    async def ok(ctx: JobContext) -> None:
        return None

    job_id = await lz.enqueue("ok", None)
    await lz.drain()
    with pytest.raises(JobStateConflict, match="is not suspended"):
        await lz.admin.jobs.cause(job_id)
    with pytest.raises(JobStateConflict, match="no longer suspended"):
        await lz.resume(job_id)


async def test_two_copies_of_one_generation_run_once(lz: Lazarus) -> None:
    """Rule: a claim is per (job, generation): duplicate copies are dropped, not run."""
    processed: list[int] = []

    @lz.handler("ok")
    async def ok(ctx: JobContext) -> None:
        processed.append(ctx.message.generation)

    message = JobMessage(type="ok", payload=None, id="dup-1")
    await asyncio.gather(*(lz.client.publish_message(message) for _ in range(5)))
    await lz.drain()
    assert (await lz.job("dup-1")).state == JobState.SUCCEEDED
    assert processed == [0]


async def test_a_paused_queue_is_not_consumed_until_resumed(lz: Lazarus) -> None:
    """Rule: a paused queue loses its consumers (in running workers and in one started
    meanwhile) and is consumed again once resumed; its listing shows the pause."""
    processed: list[str] = []

    @lz.handler("ok")
    async def ok(ctx: JobContext) -> None:
        processed.append(ctx.job_id)

    control = lz.admin.jobs

    async def consumers(n: int) -> bool:
        [queue] = await control.list_queues(["default"])
        return bool(queue.consumers == n)

    await control.pause_queue("default", "deploy in progress")
    await until(lambda: consumers(0), what="consumers to stop")
    ids = [await lz.enqueue("ok", {"i": i}) for i in range(5)]
    drained = await lz.drain()
    assert processed == []
    assert drained.waiting == {work_queue(lz.settings.namespace, "default"): 5}
    [queue] = await control.list_queues(["default"])
    assert queue.paused and queue.messages == 5 and queue.reason == "deploy in progress"
    # A worker started while the queue is paused honours the pause.
    assert lz.worker is not None
    await lz.worker.stop(grace=0)
    later = Worker(
        lz.settings, ["default"], store=lz.store, broker=lz.broker, control_interval=0.02
    )
    await later.start()
    try:
        await asyncio.sleep(0.1)
        assert processed == []
        assert await control.resume_queue("default")
        await until(lambda: len(processed) == 5, what="the jobs after resume")
        assert sorted(processed) == sorted(ids)
        await lz.drain()
    finally:
        await later.stop(grace=0)

    async def rate_shows() -> bool:
        [queue] = await control.list_queues(["default"])
        return bool(queue.per_minute >= 5 and not queue.paused)

    await until(rate_shows, what="the queue's rate to count the five jobs")


async def test_every_state_is_written_before_the_worker_stops(lz: Lazarus) -> None:
    """Rule: a worker stopping while jobs flow writes the state of every job it finished."""

    @lz.handler("ok")
    async def ok(ctx: JobContext) -> None:
        await asyncio.sleep(0)

    ids = await lz.client.enqueue_many(("ok", {"i": i}) for i in range(1500))
    worker = lz.worker
    assert worker is not None
    await until(lambda: worker.processed >= 200, what="200 jobs")
    await worker.stop(grace=5)
    succeeded = sum(
        1 for i in ids if i in lz.store.jobs and lz.store.jobs[i]["state"] == JobState.SUCCEEDED
    )
    assert 0 < succeeded == worker.processed < len(ids)
