"""Every failed in-process try leaves a log line: the retries a person expects to see."""

from __future__ import annotations

import logging

import pytest

from engine import JobContext, RetryPolicy, handler
from engine.registry import lookup
from engine.states import Verdict
from engine.worker.executor import Executor
from tests.unit.worker.test_prepare import job_of

tries: list[int] = []


@handler(
    "trylogs.twice",
    policy=RetryPolicy(transient=(ConnectionError,), attempts=3, backoff=0.001, jitter=0.001),
)
async def fails_twice(ctx: JobContext) -> None:
    tries.append(ctx.try_number)
    if ctx.try_number < 3:
        raise ConnectionError(f"down on try {ctx.try_number}")


async def test_each_failed_try_is_logged_with_its_number_and_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="lazarus.worker")
    message = job_of({"type": "trylogs.twice", "id": "job-7"})
    outcome = await Executor("unit-worker").run(lookup("trylogs.twice"), message)
    assert outcome.verdict is Verdict.SUCCEEDED and tries == [1, 2, 3]
    lines = [r.getMessage() for r in caplog.records if "try" in r.getMessage()]
    assert len(lines) == 2
    assert lines[0].startswith("job job-7 (trylogs.twice) try 1 of 3 failed, trying again in")
    assert "down on try 1" in lines[0] and "try 2 of 3 failed" in lines[1]
