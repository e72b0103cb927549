"""The crash points of docs/dead-letters.md, each made to happen on purpose with the
doubles' fault hooks: the engine's rules of tests/integration/deadletters/
test_crash_points.py, and a lost confirm and a crashed consumer besides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from engine import JobContext, RetryPolicy
from engine.amqp.topology import work_queue
from engine.filters import DeadFilter
from engine.memory.broker import Published
from engine.memory.store import InMemoryStore
from engine.message import H_REASON
from engine.testing import Lazarus
from engine.worker import settler as settler_module
from engine.worker.consume import Worker
from tests.memory.helpers import replace_worker, until


class Points:
    """``crash.points``: fails until its job is cured; notes the generation per run."""

    def __init__(self, lz: Lazarus) -> None:
        self.runs: dict[str, list[int]] = {}
        self.cured: set[str] = set()

        @lz.handler("crash.points", policy=RetryPolicy(attempts=1, max_retries=0))
        async def points(ctx: JobContext) -> None:
            self.runs.setdefault(ctx.job_id, []).append(ctx.message.generation)
            if ctx.job_id not in self.cured:
                raise RuntimeError("fails until cured")


@pytest.fixture
def points(lz: Lazarus, monkeypatch: pytest.MonkeyPatch) -> Points:
    monkeypatch.setattr(settler_module, "NACK_BACKOFF", 0.01)
    return Points(lz)


async def rows(lz: Lazarus, job_id: str) -> list[tuple[int, str]]:
    return [(r["generation"], r["status"]) for r in await lz.store.history(job_id)]


def once(picked: list[Published]) -> Any:
    """A fault predicate that picks the first dead-letter publish only."""

    def predicate(published: Published) -> bool:
        if H_REASON in published.headers and not picked:
            picked.append(published)
            return True
        return False

    return predicate


async def test_a_refused_dead_letter_publish_never_acks_the_job_away(
    lz: Lazarus, points: Points
) -> None:
    """Rule (crash point W2, a worker without a database): a dead letter the broker
    refused is not confirmed, so the job is nacked, not acked: it runs again and dies
    again, one row."""
    await replace_worker(lz, tracked=False)
    refused: list[Published] = []
    lz.broker.refuse(once(refused))
    job_id = await lz.enqueue("crash.points", None)
    await lz.drain()
    assert refused, "no dead-letter publish was refused"
    assert points.runs[job_id] == [0, 0]  # ran, refused, redelivered, ran and died
    assert await rows(lz, job_id) == [(0, "dead")]


async def test_a_tracked_worker_sends_a_refused_dead_letter_again_without_a_rerun(
    lz: Lazarus, points: Points
) -> None:
    """Rule (a worker with a database): the death is stored before its dead letter is
    published; refused, the redelivery publishes it again from the stored row instead of
    running the job a second time."""
    refused: list[Published] = []
    lz.broker.refuse(once(refused))
    job_id = await lz.enqueue("crash.points", None)
    await lz.drain()
    assert refused, "no dead-letter publish was refused"
    assert points.runs[job_id] == [0]
    assert await rows(lz, job_id) == [(0, "dead")]
    assert [m.message_id for m in lz.retained()] == [job_id]


async def test_a_dead_letter_whose_confirm_was_lost_is_stored_once(
    lz: Lazarus, points: Points
) -> None:
    """Rule (a worker without a database): a dead letter enqueued but unconfirmed is
    published again after the redelivery; the recorder keeps one row per (job,
    generation)."""
    await replace_worker(lz, tracked=False)
    lost: list[Published] = []
    lz.broker.lose_confirm(once(lost))
    job_id = await lz.enqueue("crash.points", None)
    await lz.drain()
    assert lost, "no dead-letter confirm was lost"
    assert points.runs[job_id] == [0, 0]
    assert await rows(lz, job_id) == [(0, "dead")]


async def test_a_relay_that_dies_after_the_confirm_republishes_and_the_job_runs_once(
    lz: Lazarus, points: Points, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule (crash point): the relay published and died before its commit; the next
    pass publishes the same generation again and the tracked claim lets one copy run."""
    job_id = await lz.enqueue("crash.points", None)
    await lz.drain()
    assert await rows(lz, job_id) == [(0, "dead")]
    points.cured.add(job_id)
    real_claim = InMemoryStore.claim_outbox

    @asynccontextmanager
    async def die_before_commit(self: InMemoryStore, limit: int) -> AsyncIterator[list[Any]]:
        async with real_claim(self, limit) as claimed:
            yield claimed
            if claimed:
                raise ConnectionResetError("the relay dies before its commit (on purpose)")

    monkeypatch.setattr(InMemoryStore, "claim_outbox", die_before_commit)
    with pytest.raises(ConnectionResetError):
        await lz.admin.requeue(DeadFilter(ids=(job_id,)))
    monkeypatch.setattr(InMemoryStore, "claim_outbox", real_claim)
    assert await lz.admin.relay() == 1  # the same message, published a second time
    await lz.drain()
    assert points.runs[job_id] == [0, 1]
    assert await rows(lz, job_id) == [(0, "requeued")]


async def test_a_delivery_a_crashed_consumer_held_runs_on_the_next_worker(
    lz: Lazarus, points: Points
) -> None:
    """Rule: a delivery taken and never acked (its consumer crashed) is not lost: the
    next worker runs it, once."""
    assert lz.worker is not None
    await lz.worker.stop(grace=0)
    points.cured.add("held-1")
    body = orjson.dumps({"type": "crash.points", "id": "held-1"})
    await lz.publish_raw(body)
    queue = work_queue(lz.settings.namespace, "default")
    consumers = await lz.broker.consumers(prefetch=1)
    taken: list[Any] = []

    async def take(delivery: Any) -> None:
        taken.append(delivery)  # never acked: the worker dies with it

    await consumers.consume(queue, take)
    await until(lambda: bool(taken), what="the delivery taken")
    await consumers.close()
    worker = Worker(lz.settings, ["default"], store=lz.store, broker=lz.broker)
    await worker.start()
    try:
        await lz.drain()
    finally:
        await worker.stop(grace=0)
    assert points.runs["held-1"] == [0]
    assert (await lz.job("held-1")).state == "succeeded"
