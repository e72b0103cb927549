"""A person's cancel or suspension of a running job is logged and counted as a stop,
never as a failure to retry, however the handler learns of it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from prometheus_client import REGISTRY

from engine import Client, JobContext, RetryPolicy, handler
from engine.admin.facade import Admin
from engine.admin.lifecycle import Lifecycle
from engine.pg.store import Store
from engine.settings import Settings
from engine.worker.consume import Worker
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

runs: dict[str, int] = {}
started: set[str] = set()


@handler("stops.pager", policy=RetryPolicy(attempts=3, max_retries=3, transient=(Exception,)))
async def pager(ctx: JobContext) -> None:
    """Checkpoints page after page: a person's stop shows as a refused checkpoint."""
    runs[ctx.job_id] = runs.get(ctx.job_id, 0) + 1
    started.add(ctx.job_id)
    for page in range(100_000):
        await ctx.checkpoint({"page": page})
        await asyncio.sleep(0.01)


@handler("stops.wrapper", policy=RetryPolicy(attempts=1, max_retries=3))
async def wrapper(ctx: JobContext) -> None:
    """Turns the cancel into an error of its own, as some client libraries do."""
    runs[ctx.job_id] = runs.get(ctx.job_id, 0) + 1
    started.add(ctx.job_id)
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        raise RuntimeError("connection closed while waiting") from None


def finished(job_type: str, outcome: str) -> float:
    labels = {"queue": "default", "job_type": job_type, "outcome": outcome}
    return REGISTRY.get_sample_value("lazarus_jobs_finished_total", labels) or 0.0


@asynccontextmanager
async def worker(settings: Settings, control_interval: float) -> AsyncIterator[Worker]:
    store = Store(settings)
    await store.connect()
    running = Worker(settings, ["default"], store=store, control_interval=control_interval)
    await running.start()
    try:
        yield running
    finally:
        await running.stop(grace=1)
        await store.close()


@pytest.fixture
async def control(dead_settings: Settings) -> AsyncIterator[Lifecycle]:
    async with Admin(dead_settings, actor="operator") as admin:
        yield admin.jobs


@pytest.mark.parametrize(
    ("job_type", "control_interval", "action"),
    [
        # The control loop polls once a minute: the refused checkpoint tells the handler.
        ("stops.pager", 60.0, "cancel"),
        ("stops.pager", 60.0, "suspend"),
        # The control loop cancels the task; the handler turns that into an error.
        ("stops.wrapper", 0.05, "cancel"),
    ],
)
async def test_a_person_stopping_a_running_job_is_a_stop_not_a_retry(
    dead_settings: Settings,
    control: Lifecycle,
    caplog: pytest.LogCaptureFixture,
    job_type: str,
    control_interval: float,
    action: str,
) -> None:
    caplog.set_level(logging.INFO, logger="lazarus.worker")
    stopped, retried = finished(job_type, "stopped"), finished(job_type, "retried")
    async with worker(dead_settings, control_interval), Client(dead_settings) as client:
        job_id = await client.enqueue(job_type, None)
        await wait_for(lambda: job_id in started, what="the job to start")
        await wait_for(
            lambda: _state_is(control, job_id, "running"), what="its running state written"
        )
        await (control.cancel(job_id) if action == "cancel" else control.suspend(job_id))
        await wait_for(lambda: finished(job_type, "stopped") == stopped + 1, what="the stop")
    assert finished(job_type, "retried") == retried
    assert runs[job_id] == 1
    expected = "cancelled" if action == "cancel" else "suspended"
    assert (await control.show(job_id)).state == expected
    lines = [r.getMessage() for r in caplog.records if job_id in r.getMessage()]
    assert not [line for line in lines if "retrying" in line or "failed" in line]
    assert any("stopped by a person" in line for line in lines)


async def _state_is(control: Lifecycle, job_id: str, state: str) -> bool:
    try:
        return bool((await control.show(job_id)).state == state)
    except Exception:
        return False
