"""Job states, checkpoints, suspension and pauses against the real services.

Every rule is pinned on the doubles in tests/memory/lifecycle/test_states.py; what stays
here goes the whole way (success, retry to death, requeue, suspend and resume) or needs
the services themselves (concurrent writes, consumers of a paused queue, a stop while
jobs flow).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from engine import Client, JobContext, JobStateConflict, Permanent, RetryPolicy, handler
from engine.admin.lifecycle import Lifecycle
from engine.message import JobMessage
from engine.pg.store import Store
from engine.settings import Settings
from engine.states import RequeueMode
from tests.conftest import wait_for
from tests.integration.lifecycle.conftest import tracking_worker

processed: dict[str, list[int]] = {}
gates: dict[str, asyncio.Event] = {}
started: set[str] = set()
fail_at: dict[str, int] = {}


@handler("lc.ok")
async def ok(ctx: JobContext) -> None:
    processed.setdefault(ctx.job_id, []).append(ctx.message.generation)


@handler("lc.items", policy=RetryPolicy(attempts=1, max_retries=0))
async def items(ctx: JobContext) -> None:
    """Processes items 0..99 from its checkpoint; fails at fail_at[job] once."""
    start = (ctx.checkpoint_state or {}).get("next", 0)
    for i in range(start, 100):
        if fail_at.get(ctx.job_id) == i:
            del fail_at[ctx.job_id]
            raise RuntimeError(f"item {i} is broken")
        processed.setdefault(ctx.job_id, []).append(i)
        await ctx.checkpoint({"next": i + 1})


@handler(
    "lc.fragile",
    policy=RetryPolicy(attempts=1, max_retries=1, retry_delay=0.2),
    suspend_on_failure=True,
)
async def fragile(ctx: JobContext) -> None:
    await ctx.checkpoint({"seen": ctx.payload})
    if not (ctx.payload or {}).get("fixed"):
        raise ValueError(f"bad input {ctx.payload!r}")
    processed.setdefault(ctx.job_id, []).append(ctx.message.generation)


@handler("lc.gated", policy=RetryPolicy(attempts=1, max_retries=0))
async def gated(ctx: JobContext) -> None:
    """Waits for its gate; raises if the payload asks to, after the gate opens."""
    started.add(ctx.job_id)
    await ctx.checkpoint({"step": 1})
    await gates.setdefault(ctx.job_id, asyncio.Event()).wait()
    if (ctx.payload or {}).get("fail"):
        raise Permanent("failed after the gate")
    processed.setdefault(ctx.job_id, []).append(ctx.message.generation)


@handler("lc.slow_retry", policy=RetryPolicy(attempts=1, max_retries=3, retry_delay=1.5))
async def slow_retry(ctx: JobContext) -> None:
    processed.setdefault(ctx.job_id, []).append(ctx.message.generation)
    if ctx.message.generation == 0:
        raise RuntimeError("retry me later")


async def job_state(control: Lifecycle, job_id: str) -> str | None:
    try:
        return str((await control.show(job_id)).state)
    except Exception:
        return None


async def state_is(control: Lifecycle, job_id: str, state: str) -> bool:
    return await job_state(control, job_id) == state


async def test_a_job_is_tracked_from_running_to_succeeded(
    dead_settings: Settings, control: Lifecycle
) -> None:
    async with tracking_worker(dead_settings), Client(dead_settings) as client:
        job_id = await client.enqueue("lc.ok", {"x": 1})
        await wait_for(lambda: state_is(control, job_id, "succeeded"), what="succeeded")
    job = await control.show(job_id)
    assert job.payload == {"x": 1} and job.attempt == 0 and job.started_at is not None


async def test_a_retrying_job_shows_retrying_then_dead(
    dead_settings: Settings, control: Lifecycle
) -> None:
    async with tracking_worker(dead_settings), Client(dead_settings) as client:
        job_id = await client.enqueue("lc.slow_retry", None, max_retries=1)
        await wait_for(lambda: state_is(control, job_id, "retrying"), what="retrying")
        await wait_for(lambda: state_is(control, job_id, "dead"), what="dead")
    job = await control.show(job_id)
    assert job.error_type == "RuntimeError" and job.attempt == 1


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (RequeueMode.RECOVER, list(range(60)) + list(range(60, 100))),
        (RequeueMode.RESTART, list(range(60)) + list(range(100))),
    ],
)
async def test_recover_continues_from_the_checkpoint_and_restart_starts_over(
    dead_settings: Settings, control: Lifecycle, mode: RequeueMode, expected: list[int]
) -> None:
    job_id = str(uuid.uuid4())
    fail_at[job_id] = 60
    async with tracking_worker(dead_settings), Client(dead_settings) as client:
        await client.enqueue("lc.items", None, job_id=job_id)
        await wait_for(lambda: state_is(control, job_id, "dead"), what="the job to die")
        await wait_for(lambda: _dead_row(control.store, job_id), what="its dead letter")
        await control.admin.requeue_one(job_id, mode=mode)
        await wait_for(lambda: state_is(control, job_id, "succeeded"), what="the rerun")
    assert processed[job_id] == expected


async def _dead_row(store: Store, job_id: str) -> bool:
    return bool(await store.history(job_id))


async def test_suspend_on_failure_keeps_payload_and_checkpoint_with_its_cause(
    dead_settings: Settings, control: Lifecycle, store: Store
) -> None:
    async with tracking_worker(dead_settings), Client(dead_settings) as client:
        job_id = await client.enqueue("lc.fragile", {"fixed": False})
        await wait_for(lambda: state_is(control, job_id, "suspended"), what="suspended")
        cause = await control.cause(job_id)
        assert cause.cause.startswith("ValueError: bad input")
        assert "Traceback" in cause.traceback
        assert await store.history(job_id) == []  # suspended, not dead
        job = await control.show(job_id)
        assert job.checkpoint == {"seen": {"fixed": False}}
        await control.resume(job_id, payload={"fixed": True}, replace_payload=True)
        await wait_for(lambda: state_is(control, job_id, "succeeded"), what="the fixed run")
    assert processed[job_id] == [1]


async def test_concurrent_resume_and_cancel_give_one_winner(
    dead_settings: Settings, control: Lifecycle
) -> None:
    async with tracking_worker(dead_settings), Client(dead_settings) as client:
        job_id = await client.enqueue("lc.gated", None)
        await wait_for(lambda: state_is(control, job_id, "running"), what="running")
        seen = await control.suspend(job_id)  # both people act on what they saw
        calls: list[Any] = [control.resume(job_id, generation=seen.generation) for _ in range(20)]
        calls += [control.cancel(job_id, generation=seen.generation) for _ in range(20)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        gates[job_id].set()
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(e, JobStateConflict) and "no longer" in str(e) for e in losers)


async def test_two_copies_of_one_generation_run_once(
    dead_settings: Settings, control: Lifecycle
) -> None:
    job_id = str(uuid.uuid4())
    async with tracking_worker(dead_settings), Client(dead_settings) as client:
        message = JobMessage(type="lc.ok", payload=None, id=job_id)
        await asyncio.gather(*(client.publish_message(message) for _ in range(5)))
        await wait_for(lambda: state_is(control, job_id, "succeeded"), what="succeeded")
        await asyncio.sleep(1.0)
    assert processed[job_id] == [0]


async def test_a_paused_queue_is_not_consumed_until_resumed(
    dead_settings: Settings, control: Lifecycle
) -> None:
    async with tracking_worker(dead_settings), Client(dead_settings) as client:
        await control.pause_queue("default", "deploy in progress")
        await wait_for(lambda: _consumers(control, 0), what="consumers to stop")
        ids = [await client.enqueue("lc.ok", {"i": i}) for i in range(5)]
        await asyncio.sleep(1.0)
        assert not any(i in processed for i in ids)
        [queue] = await control.list_queues(["default"])
        assert queue.paused and queue.messages == 5 and queue.reason == "deploy in progress"
    # A worker started while the queue is paused honours the pause.
    async with tracking_worker(dead_settings):
        await asyncio.sleep(1.0)
        assert not any(i in processed for i in ids)
        assert await control.resume_queue("default")
        await wait_for(lambda: all(i in processed for i in ids), what="the jobs after resume")

        async def rate_shows() -> bool:  # the states are written in batches, just after
            [queue] = await control.list_queues(["default"])
            return bool(queue.per_minute >= 5 and not queue.paused)

        await wait_for(rate_shows, what="the queue's rate to count the five jobs")


async def _consumers(control: Lifecycle, n: int) -> bool:
    [queue] = await control.list_queues(["default"])
    return bool(queue.consumers == n)


async def test_every_state_is_written_before_the_worker_stops(
    dead_settings: Settings, store: Store
) -> None:
    async with Client(dead_settings) as client:
        await client.declare_queue()
        ids = await client.enqueue_many(("lc.ok", {"i": i}) for i in range(3000))
    async with tracking_worker(dead_settings) as worker:
        await wait_for(lambda: worker.processed >= 500, what="500 jobs")
    # Stopped while jobs were flowing: every job it finished has its row.
    succeeded = await store.pool.fetchval(
        "SELECT count(*) FROM jobs WHERE state = 'succeeded' AND job_id = ANY($1::text[])", ids
    )
    assert succeeded == worker.processed
