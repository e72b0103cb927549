"""Decisions a worker wrote before it lost the message are carried out, never dropped:
the engine's rules of tests/integration/lifecycle/test_decisions.py on the doubles."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from engine import JobContext, JobStateConflict, Permanent, RetryPolicy
from engine.amqp.topology import work_queue
from engine.filters import DeadFilter
from engine.memory.broker import Published
from engine.memory.store import InMemoryStore
from engine.message import H_REDELIVERIES
from engine.states import JobState
from engine.testing import Lazarus
from engine.worker import settler as settler_module
from engine.worker.consume import Worker
from tests.memory.helpers import until


async def test_a_retry_whose_publish_failed_after_retrying_was_written_still_runs(
    lz: Lazarus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: a broker retry whose publish is refused after RETRYING was written is
    decided again from the row on redelivery (the handler is not run twice)."""
    runs: list[int] = []

    @lz.handler("fails_once", policy=RetryPolicy(attempts=1, max_retries=2, retry_delay=0.1))
    async def fails_once(ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        if ctx.attempt == 0:
            raise RuntimeError("first run fails")

    monkeypatch.setattr(settler_module, "NACK_BACKOFF", 0.01)  # redelivered at once
    refused: list[Published] = []

    def first_retry(published: Published) -> bool:
        if ".delay." in published.routing_key + published.exchange and not refused:
            refused.append(published)
            return True
        return False

    lz.broker.refuse(first_retry)
    job_id = await lz.enqueue("fails_once", None)
    await lz.drain()
    assert refused, "the retry's publish was never refused"
    assert runs == [0, 1]
    assert (await lz.job(job_id)).state == JobState.SUCCEEDED


async def test_a_dead_letter_whose_job_a_person_stopped_is_not_requeued(lz: Lazarus) -> None:
    """Rule: a requeue moves only dead letters of jobs that are dead (a cancel racing the
    death leaves a dead letter and a cancelled job: that one stays)."""

    @lz.handler("dies", policy=RetryPolicy(attempts=1, max_retries=0))
    async def dies(ctx: JobContext) -> None:
        raise Permanent("no way")

    job_id = await lz.enqueue("dies", None)
    await lz.drain()
    assert await lz.store.count_dead(DeadFilter(ids=(job_id,))) == 1
    lz.store.jobs[job_id]["state"] = JobState.CANCELLED  # what the race leaves behind
    with pytest.raises(JobStateConflict, match="cancelled"):
        await lz.requeue(job_id)
    assert await lz.admin.requeue(DeadFilter(ids=(job_id,))) == 0
    [letter] = await lz.admin.show(job_id)
    assert letter.status == "dead"


async def test_a_crash_looping_tracked_job_is_decided_dead(lz: Lazarus) -> None:
    """Rule: a message redelivered after max_redeliveries redeliveries is not run again:
    it dies as a crash loop, with a dead letter and a DEAD row naming the cause."""
    runs: list[int] = []

    @lz.handler("counted")
    async def counted(ctx: JobContext) -> None:
        runs.append(ctx.attempt)

    assert lz.worker is not None
    await lz.worker.stop(grace=0)
    job_id = "crash-looper"
    body = orjson.dumps({"type": "counted", "id": job_id})
    await lz.publish_raw(body, headers={H_REDELIVERIES: lz.settings.max_redeliveries})
    async with lz.broker.reader() as reader:  # taken and never acked: a crashed worker
        assert await reader.get(work_queue(lz.settings.namespace, "default")) is not None
    worker = Worker(lz.settings, ["default"], store=lz.store, broker=lz.broker)
    await worker.start()
    try:
        await lz.drain()
    finally:
        await worker.stop(grace=0)
    job = await lz.job(job_id)
    assert job.state == JobState.DEAD
    assert "CrashLoop" in str(job.cause)
    assert await lz.store.count_dead(DeadFilter(ids=(job_id,))) == 1
    assert runs == []


async def test_a_success_is_acked_only_after_its_state_is_written(
    lz: Lazarus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule: the ack of a success waits for its SUCCEEDED row (a worker dying between the
    ack and the write would leave a RUNNING row forever)."""
    ran: list[str] = []

    @lz.handler("counted")
    async def counted(ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    gate = asyncio.Event()
    real_report = InMemoryStore.report

    async def slow_success(self: InMemoryStore, rows: Any) -> Any:
        if any("succeeded" in row for row in rows):
            await gate.wait()
        return await real_report(self, rows)

    monkeypatch.setattr(InMemoryStore, "report", slow_success)
    worker = lz.worker
    assert worker is not None
    job_id = await lz.enqueue("counted", None)
    await until(lambda: job_id in ran, what="the handler to run")
    await asyncio.sleep(0.05)
    assert worker.processed == 0  # ran, not acked: the ack waits for the row
    assert (await lz.job(job_id)).state == JobState.RUNNING
    gate.set()
    await until(lambda: worker.processed == 1, what="the ack after the write")
    assert (await lz.job(job_id)).state == JobState.SUCCEEDED
