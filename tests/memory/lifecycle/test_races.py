"""Two operations on one job at once, without a generation: the second to write finds
the job no longer as it found it, and fails. The engine's rules of
tests/integration/lifecycle/test_races.py on the in-memory store.

Each test holds one operation between its read of the job and its write (the store call
that writes), lets the other one finish, then lets the held one write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from engine import JobContext, JobStateConflict, Permanent, RetryPolicy
from engine.admin.lifecycle import Lifecycle
from engine.testing import Lazarus
from engine.worker.consume import Worker
from tests.memory.helpers import until


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


@pytest.fixture
async def racing(lz: Lazarus) -> AsyncIterator[Lazarus]:
    """A harness with ``race`` registered: suspended by its failure in generation 0,
    waiting for ``lz.gate`` in later ones."""
    gate = asyncio.Event()

    @lz.handler("race", policy=RetryPolicy(attempts=1, max_retries=0), suspend_on_failure=True)
    async def race(ctx: JobContext) -> None:
        if ctx.message.generation == 0:
            raise Permanent("suspend me")
        await gate.wait()

    yield lz
    gate.set()


async def state_of(control: Lifecycle, job_id: str) -> tuple[str, int]:
    job = await control.show(job_id)
    return str(job.state), int(job.generation)


async def suspended_job(lz: Lazarus) -> str:
    """A job suspended by its failure in generation 0; no worker is left running."""
    job_id = await lz.enqueue("race", None)
    await lz.drain()
    assert lz.worker is not None
    await lz.worker.stop(grace=0)
    assert await state_of(lz.admin.jobs, job_id) == ("suspended", 0)
    return job_id


async def pending_job(lz: Lazarus) -> str:
    """A job pending in generation 1 (resumed while no worker runs)."""
    job_id = await suspended_job(lz)
    await lz.admin.jobs.resume(job_id)
    assert await state_of(lz.admin.jobs, job_id) == ("pending", 1)
    return job_id


async def hold(
    monkeypatch: pytest.MonkeyPatch, control: Lifecycle, method: str, operation: Awaitable[Any]
) -> tuple[Held, asyncio.Future[Any]]:
    """Start ``operation`` and hold it at its write (``control.store.<method>``)."""
    held = Held(getattr(control.store, method))
    monkeypatch.setattr(control.store, method, held)
    task = asyncio.ensure_future(operation)
    await held.arrived.wait()
    monkeypatch.undo()
    return held, task


async def test_a_cancel_that_began_before_a_resume_finished_fails(
    racing: Lazarus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: a cancel writes only if the job is still suspended in the generation read."""
    control = racing.admin.jobs
    job_id = await suspended_job(racing)
    held, cancel = await hold(monkeypatch, control, "stop_job", control.cancel(job_id))
    resumed = await control.resume(job_id)
    held.release.set()
    with pytest.raises(JobStateConflict, match="no longer suspended in generation 0"):
        await cancel
    assert resumed.generation == 1
    assert await state_of(control, job_id) == ("pending", 1)


async def test_a_resume_that_began_before_a_cancel_finished_fails(
    racing: Lazarus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: a resume writes only if the job is still suspended in the generation read."""
    control = racing.admin.jobs
    job_id = await suspended_job(racing)
    held, resume = await hold(monkeypatch, control, "resume_job", control.resume(job_id))
    await control.cancel(job_id)
    held.release.set()
    with pytest.raises(JobStateConflict, match="no longer suspended in generation 0"):
        await resume
    assert await state_of(control, job_id) == ("cancelled", 0)


async def test_a_cancel_that_began_before_a_suspend_finished_fails(
    racing: Lazarus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: a cancel of a pending job fails once a person suspended it meanwhile."""
    control = racing.admin.jobs
    job_id = await pending_job(racing)
    held, cancel = await hold(monkeypatch, control, "stop_job", control.cancel(job_id, "old"))
    await control.suspend(job_id, "new")
    held.release.set()
    with pytest.raises(JobStateConflict, match="is suspended in generation 1"):
        await cancel
    job = await control.show(job_id)
    assert (job.state, job.cause) == ("suspended", "Requested by user: new")


async def test_a_suspend_that_began_before_a_cancel_finished_fails(
    racing: Lazarus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: a suspend of a pending job fails once a person cancelled it meanwhile."""
    control = racing.admin.jobs
    job_id = await pending_job(racing)
    held, suspend = await hold(monkeypatch, control, "stop_job", control.suspend(job_id))
    await control.cancel(job_id)
    held.release.set()
    with pytest.raises(JobStateConflict, match="is cancelled in generation 1"):
        await suspend
    assert await state_of(control, job_id) == ("cancelled", 1)


async def test_a_worker_starting_the_job_does_not_make_a_suspend_fail(
    racing: Lazarus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: pending -> running in the same generation is not a conflict for a suspend."""
    lz = racing
    control = lz.admin.jobs
    job_id = await pending_job(lz)
    held, suspend = await hold(monkeypatch, control, "stop_job", control.suspend(job_id))
    worker = Worker(lz.settings, ["default"], store=lz.store, broker=lz.broker)
    await worker.start()
    try:

        async def running() -> bool:
            return await state_of(control, job_id) == ("running", 1)

        await until(running, what="the worker to start generation 1")
        held.release.set()
        stopped = await suspend
    finally:
        await worker.stop(grace=0)
    assert (stopped.state, stopped.generation) == ("suspended", 1)
