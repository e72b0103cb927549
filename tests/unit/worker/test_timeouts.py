"""A handler's timeout bounds one try: past it the try fails with TimeoutError; a cancel
from outside (shutdown, a person's suspension) stays a cancel."""

from __future__ import annotations

import asyncio

import pytest

from engine import JobContext, RetryPolicy, handler
from engine.outcome import Outcome
from engine.registry import lookup
from engine.states import Verdict
from engine.worker.executor import Executor
from tests.unit.worker.test_prepare import job_of

WORKER = Executor("unit-worker")
ONE_TRY = RetryPolicy(attempts=1, max_retries=0, timeout=0.05)


@handler("timeouts.slow", policy=ONE_TRY)
async def slow(ctx: JobContext) -> None:
    await asyncio.sleep(float(ctx.payload["sleep"]))


async def run_slow(sleep: float) -> Outcome:
    message = job_of({"type": "timeouts.slow", "payload": {"sleep": sleep}})
    return await WORKER.run(lookup("timeouts.slow"), message)


async def test_a_try_past_its_timeout_fails_with_timeout_error() -> None:
    started = asyncio.get_running_loop().time()
    outcome = await run_slow(5)
    waited = asyncio.get_running_loop().time() - started
    assert outcome.verdict is Verdict.DEAD
    assert outcome.error is not None and outcome.error.type == "TimeoutError"
    assert "ran longer than 0.05 s" in outcome.error.message
    assert waited < 1  # cut short, not run to its end


async def test_a_try_within_its_timeout_succeeds_and_leaves_no_timer_behind() -> None:
    outcomes = [await run_slow(0) for _ in range(3)]
    assert [o.verdict for o in outcomes] == [Verdict.SUCCEEDED] * 3
    await asyncio.sleep(0.15)  # a timer left armed would now cancel this test's task


async def test_a_cancel_from_outside_is_not_taken_for_a_timeout() -> None:
    task = asyncio.create_task(run_slow(0.04))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
