"""A person's cancel or suspension of a running job is logged and counted as a stop,
never as a failure to retry, however the handler learns of it: the engine's rule of
tests/integration/test_person_stops.py on the doubles."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY

from engine import JobContext, RetryPolicy
from engine.testing import Lazarus
from engine.worker.consume import Worker
from tests.memory.helpers import until


def finished(job_type: str, outcome: str) -> float:
    labels = {"queue": "default", "job_type": job_type, "outcome": outcome}
    return REGISTRY.get_sample_value("lazarus_jobs_finished_total", labels) or 0.0


@pytest.mark.parametrize(
    ("job_type", "control_interval", "action"),
    [
        # The control loop polls once a minute: the refused checkpoint tells the handler.
        ("mem_stops.pager", 60.0, "cancel"),
        ("mem_stops.pager", 60.0, "suspend"),
        # The control loop cancels the task; the handler turns that into an error.
        ("mem_stops.wrapper", 0.02, "cancel"),
    ],
)
async def test_a_person_stopping_a_running_job_is_a_stop_not_a_retry(
    lz: Lazarus,
    caplog: pytest.LogCaptureFixture,
    job_type: str,
    control_interval: float,
    action: str,
) -> None:
    """Rule: a stop by a person (seen as a refused checkpoint, or as a cancelled task the
    handler turned into an error) is outcome "stopped", not retried, logged as such."""
    runs: dict[str, int] = {}
    started: set[str] = set()

    @lz.handler(
        "mem_stops.pager", policy=RetryPolicy(attempts=3, max_retries=3, transient=(Exception,))
    )
    async def pager(ctx: JobContext) -> None:
        runs[ctx.job_id] = runs.get(ctx.job_id, 0) + 1
        started.add(ctx.job_id)
        for page in range(100_000):
            await ctx.checkpoint({"page": page})
            await asyncio.sleep(0.001)

    @lz.handler("mem_stops.wrapper", policy=RetryPolicy(attempts=1, max_retries=3))
    async def wrapper(ctx: JobContext) -> None:
        runs[ctx.job_id] = runs.get(ctx.job_id, 0) + 1
        started.add(ctx.job_id)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("connection closed while waiting") from None

    assert lz.worker is not None
    await lz.worker.stop(grace=0)
    caplog.set_level(logging.INFO, logger="lazarus.worker")
    stopped, retried = finished(job_type, "stopped"), finished(job_type, "retried")
    worker = Worker(
        lz.settings,
        ["default"],
        store=lz.store,
        broker=lz.broker,
        control_interval=control_interval,
    )
    await worker.start()
    try:
        job_id = await lz.enqueue(job_type, None)
        await until(lambda: job_id in started, what="the job to start")

        async def running() -> bool:
            return bool((await lz.job(job_id)).state == "running")

        await until(running, what="its running state written")
        await (lz.cancel(job_id) if action == "cancel" else lz.suspend(job_id))
        await until(lambda: finished(job_type, "stopped") == stopped + 1, what="the stop")
    finally:
        await worker.stop(grace=1)
    assert finished(job_type, "retried") == retried
    assert runs[job_id] == 1
    expected = "cancelled" if action == "cancel" else "suspended"
    assert (await lz.job(job_id)).state == expected
    lines = [r.getMessage() for r in caplog.records if job_id in r.getMessage()]
    assert not [line for line in lines if "retrying" in line or "failed" in line]
    assert any("stopped by a person" in line for line in lines)
