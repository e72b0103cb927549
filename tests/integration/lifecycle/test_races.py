"""Two operations on one job at once, without --generation: the second one to write finds
the job no longer as it found it, and fails.

Each test holds one operation between its read of the job and its write (the store call
that writes), lets the other one finish, then lets the held one write. The races between
people (cancel, resume, suspend) are pinned on the in-memory store in
tests/memory/lifecycle/test_races.py, the compare-and-set of the SQL in
tests/contract/test_store.py; here a real worker starts the job while a suspend is held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from engine import Client, JobContext, Permanent, RetryPolicy, handler
from engine.admin.lifecycle import Lifecycle
from engine.settings import Settings
from tests.conftest import wait_for
from tests.integration.lifecycle.conftest import tracking_worker

gates: dict[str, asyncio.Event] = {}


@handler("race.job", policy=RetryPolicy(attempts=1, max_retries=0), suspend_on_failure=True)
async def race_job(ctx: JobContext) -> None:
    """Fails (and is suspended) in generation 0; later generations wait for their gate."""
    if ctx.message.generation == 0:
        raise Permanent("suspend me")
    await gates.setdefault(ctx.job_id, asyncio.Event()).wait()


class Held:
    """Holds the calls of one store method until released, and says when one arrived."""

    def __init__(self, method: Callable[..., Awaitable[Any]]) -> None:
        self.method = method
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.arrived.set()
        await self.release.wait()
        return await self.method(*args, **kwargs)


async def state_of(control: Lifecycle, job_id: str) -> tuple[str, int] | None:
    try:
        job = await control.show(job_id)
    except Exception:
        return None
    return str(job.state), int(job.generation)


async def suspended_job(settings: Settings, control: Lifecycle) -> str:
    """A job suspended by its failure in generation 0; no worker is left running."""
    async with tracking_worker(settings), Client(settings) as client:
        job_id = await client.enqueue("race.job", None)

        async def suspended() -> bool:
            return await state_of(control, job_id) == ("suspended", 0)

        await wait_for(suspended, what="the job suspended by its failure")
    return job_id


async def pending_job(settings: Settings, control: Lifecycle) -> str:
    """A job pending in generation 1 (resumed while no worker runs)."""
    job_id = await suspended_job(settings, control)
    await control.resume(job_id)
    assert await state_of(control, job_id) == ("pending", 1)
    return job_id


async def hold(
    monkeypatch: pytest.MonkeyPatch, control: Lifecycle, method: str, operation: Awaitable[Any]
) -> tuple[Held, asyncio.Task[Any]]:
    """Start ``operation`` and hold it at its write (``control.store.<method>``)."""
    held = Held(getattr(control.store, method))
    monkeypatch.setattr(control.store, method, held)
    task = asyncio.ensure_future(operation)
    await held.arrived.wait()
    monkeypatch.undo()
    return held, task


async def test_a_worker_starting_the_job_does_not_make_a_suspend_fail(
    dead_settings: Settings, control: Lifecycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await pending_job(dead_settings, control)
    held, suspend = await hold(monkeypatch, control, "stop_job", control.suspend(job_id))
    async with tracking_worker(dead_settings):

        async def running() -> bool:
            return await state_of(control, job_id) == ("running", 1)

        await wait_for(running, what="the worker to start generation 1")
        held.release.set()
        stopped = await suspend
        gates.setdefault(job_id, asyncio.Event()).set()
    assert (stopped.state, stopped.generation) == ("suspended", 1)
