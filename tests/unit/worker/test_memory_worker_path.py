"""The worker path and the relay over the in-memory store: no PostgreSQL, the same rules."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from engine.filters import DeadFilter
from engine.memory.store import InMemoryStore
from engine.message import JobMessage
from engine.outbox.relay import drain
from engine.pg.store import DeadRecord
from engine.states import DeadStatus, JobState
from engine.worker.tracker import Tracker, Transition, started


def message(job_id: str, payload: Any = None) -> JobMessage:
    return JobMessage(type="mail.send", payload=payload or {}, id=job_id)


async def test_claims_and_outcomes_follow_the_stores_order() -> None:
    store = InMemoryStore()
    tracker = Tracker(store, linger=0.001)
    tracker.start()
    try:
        assert await tracker.claim(started(message("j1"), "w1", 0)) is True
        assert await tracker.claim(started(message("j1"), "w2", 0)) is False  # a duplicate copy
        assert await tracker.decide(Transition(message("j1"), JobState.SUCCEEDED, "w1")) is True
    finally:
        await tracker.stop()
    job = await store.get_job("j1")
    assert job is not None and (job["state"], job["worker"]) == ("succeeded", "w1")


async def test_reports_made_during_an_outage_are_written_after_it() -> None:
    store = InMemoryStore()
    tracker = Tracker(store, linger=0.001)
    tracker.start()
    try:
        with store.outage():
            tracker.report(Transition(message("j1"), JobState.SUCCEEDED, "w1"))
            await asyncio.sleep(0.1)
            assert store.jobs == {}
        for _ in range(200):
            if "j1" in store.jobs:
                break
            await asyncio.sleep(0.01)
    finally:
        await tracker.stop()
    assert store.jobs["j1"]["state"] == JobState.SUCCEEDED


async def test_a_payload_the_store_refuses_is_left_out_not_the_state() -> None:
    store = InMemoryStore()
    tracker = Tracker(store, linger=0.001)
    tracker.start()
    try:
        assert await tracker.claim(started(message("j1", {"text": "NUL \x00"}), "w1", 0))
    finally:
        await tracker.stop()
    job = await store.get_job("j1")
    assert job is not None and (job["state"], job["payload"]) == ("running", None)


class RecordingBroker:
    """What the relay asks of a broker, recorded."""

    ns = "ns"

    def __init__(self) -> None:
        self.published: list[tuple[str, str, bytes, Any, str | None]] = []

    async def ensure_work_queue(self, queue: str) -> None:
        pass

    async def publish_many(self, outgoing: Iterable[Any], *, in_flight: int = 1000) -> int:
        self.published.extend(outgoing)
        return len(self.published)


async def test_the_relay_publishes_a_staged_requeue_once() -> None:
    store, broker = InMemoryStore(), RecordingBroker()
    now = datetime.now(UTC)
    await store.insert_dead(
        [
            DeadRecord(
                "j1",
                0,
                "mail.send",
                "default",
                {},
                b"{}",
                {},
                1,
                0,
                "permanent error",
                "ValueError",
                "bad",
                "",
                None,
                None,
                now,
                "w1",
            )
        ]
    )
    ids = await store.matching_ids(DeadFilter(), after_id=0, upto_id=10, limit=10)
    assert await store.stage_requeue(ids, "ann", lambda row: b"generation 1") == 1
    assert await drain(store, broker) == 1  # type: ignore[arg-type]
    assert await drain(store, broker) == 0  # type: ignore[arg-type]
    assert broker.published == [("ns.work", "default", b"generation 1", None, "j1")]
    assert [r["status"] for r in await store.history("j1")] == [DeadStatus.REQUEUED]
