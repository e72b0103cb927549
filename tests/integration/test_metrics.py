"""Workers count what happens to jobs in Prometheus metrics."""

from __future__ import annotations

from prometheus_client import REGISTRY

from engine import Client, JobContext, Permanent, RetryPolicy, Worker, handler
from engine.settings import Settings
from tests.conftest import wait_for


@handler("metrics.ok")
async def ok(ctx: JobContext) -> None:
    pass


@handler("metrics.bad", policy=RetryPolicy(attempts=1, max_retries=0))
async def bad(ctx: JobContext) -> None:
    raise Permanent("no")


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_finished_jobs_are_counted_by_outcome(settings: Settings) -> None:
    before_ok = value(
        "lazarus_jobs_finished_total", queue="default", job_type="metrics.ok", outcome="succeeded"
    )
    before_dead = value(
        "lazarus_jobs_finished_total", queue="default", job_type="metrics.bad", outcome="dead"
    )
    before_failures = value("lazarus_job_failures_total", queue="default", job_type="metrics.bad")
    worker = Worker(settings, ["default"], concurrency=4)
    await worker.start()
    try:
        async with Client(settings) as client:
            for _ in range(3):
                await client.enqueue("metrics.ok")
            await client.enqueue("metrics.bad")
        await wait_for(lambda: worker.processed >= 4, what="4 jobs")
    finally:
        await worker.stop()
    assert (
        value(
            "lazarus_jobs_finished_total",
            queue="default",
            job_type="metrics.ok",
            outcome="succeeded",
        )
        == before_ok + 3
    )
    assert (
        value(
            "lazarus_jobs_finished_total", queue="default", job_type="metrics.bad", outcome="dead"
        )
        == before_dead + 1
    )
    assert value("lazarus_job_failures_total", queue="default", job_type="metrics.bad") == (
        before_failures + 1
    )
    assert value("lazarus_job_duration_seconds_count", queue="default", job_type="metrics.ok") >= 3
    assert value("lazarus_jobs_in_flight", queue="default") == 0
