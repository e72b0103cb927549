"""A value PostgreSQL rejects fails only its own job's transition, never its whole batch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from engine.errors import ServiceUnavailable
from engine.message import JobMessage
from engine.outcome import ErrorInfo
from engine.pg.store import Store
from engine.states import JobState
from engine.worker.tracker import Tracker, Transition, started
from tests.conftest import make_settings, unique_namespace


@pytest.fixture
async def job_store() -> AsyncIterator[Store]:
    """A migrated schema of this test's own (no broker needed), dropped afterwards."""
    store = Store(make_settings(unique_namespace()))
    await store.connect(require_schema=False)
    await store.migrate()
    try:
        yield store
    finally:
        await store.drop_schema()
        await store.close()


@pytest.fixture
async def tracker(job_store: Store) -> AsyncIterator[Tracker]:
    """A running tracker whose linger puts everything queued at once in one batch."""
    t = Tracker(job_store, linger=0.2)
    t.start()
    try:
        yield t
    finally:
        await t.stop()


def job(job_id: str, payload: object = None, checkpoint: object = None) -> JobMessage:
    return JobMessage(type="t", payload=payload or {"id": job_id}, id=job_id, checkpoint=checkpoint)


def claim(message: JobMessage) -> Transition:
    return started(message, "w1", 0)


def failure(message: JobMessage, state: JobState, text: str) -> Transition:
    error = ErrorInfo("RuntimeError", text, f"Traceback: {text}")
    return Transition(message, state, "w1", error=error, cause=f"RuntimeError: {text}")


async def rows(store: Store) -> dict[str, dict[str, object]]:
    return {r["job_id"]: dict(r) for r in await store.pool.fetch("SELECT * FROM jobs")}


def written_one_by_one(caplog: pytest.LogCaptureFixture, jobs: int) -> bool:
    """Whether one batch of ``jobs`` jobs was rejected whole and written row by row."""
    return f"{jobs} job transitions rejected" in caplog.text


async def test_a_claim_with_a_nul_in_its_payload_leaves_the_other_claims_to_postgresql(
    job_store: Store, tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    first, done = job("a-first"), job("d-done")
    assert await asyncio.gather(tracker.claim(claim(first)), tracker.claim(claim(done))) == [
        True,
        True,
    ]
    bad, good = job("b-bad", payload={"text": "x\u0000y"}), job("c-good")
    tracker.report(Transition(done, JobState.SUCCEEDED, "w1"))
    granted = await asyncio.gather(
        tracker.claim(claim(first)),  # a duplicate copy: PostgreSQL refuses it
        tracker.claim(claim(bad)),
        tracker.claim(claim(good)),
    )
    await tracker.stop()
    assert granted == [False, True, True]
    assert written_one_by_one(caplog, 4)  # all four were in one batch
    stored = await rows(job_store)
    assert {k: r["state"] for k, r in stored.items()} == {
        "a-first": "running",
        "b-bad": "running",
        "c-good": "running",
        "d-done": "succeeded",
    }
    assert stored["b-bad"]["payload"] is None  # written bare
    assert stored["c-good"]["payload"] == {"id": "c-good"}


async def test_decisive_reports_with_a_nul_in_their_error_are_written_without_it(
    job_store: Store, tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    dead, suspended, retrying = job("e-dead"), job("f-suspended"), job("g-retrying")
    resumed = job("h-resumed", checkpoint={"at": "\u0000"})
    assert all(await asyncio.gather(*(tracker.claim(claim(m)) for m in (dead, suspended))))
    tracker.report(failure(retrying, JobState.RETRYING, "retry\u0000me"))
    applied = await asyncio.gather(
        tracker.decide(failure(dead, JobState.DEAD, "bad\u0000byte")),
        tracker.decide(failure(suspended, JobState.SUSPENDED, "plain")),
        tracker.claim(claim(resumed)),
    )
    await tracker.stop()
    assert applied == [True, True, True]
    assert written_one_by_one(caplog, 4)
    stored = await rows(job_store)
    assert stored["e-dead"]["state"] == "dead"
    assert stored["e-dead"]["error_message"] == "badbyte"
    assert stored["e-dead"]["cause"] == "RuntimeError: badbyte"
    assert stored["f-suspended"]["error_message"] == "plain"
    assert stored["g-retrying"]["error_message"] == "retryme"
    assert stored["h-resumed"]["state"] == "running"
    assert stored["h-resumed"]["checkpoint"] is None


async def test_a_row_rejected_even_bare_fails_alone(
    job_store: Store, tracker: Tracker, caplog: pytest.LogCaptureFixture
) -> None:
    first = job("a-first")
    assert await tracker.claim(claim(first))
    unstorable = job("b-\u0000-claim"), job("b-\u0000-dead")  # a NUL in the key itself
    tracker.report(Transition(job("c-report"), JobState.SUCCEEDED, "w1"))
    results = await asyncio.gather(
        tracker.claim(claim(first)),
        tracker.claim(claim(unstorable[0])),
        tracker.decide(failure(unstorable[1], JobState.DEAD, "boom")),
        tracker.decide(failure(job("d-dead"), JobState.DEAD, "boom")),
        return_exceptions=True,
    )
    await tracker.stop()
    assert results[:2] == [False, True]  # refused by PostgreSQL; run anyway (unstorable)
    assert isinstance(results[2], ServiceUnavailable)
    assert results[3] is True
    assert written_one_by_one(caplog, 5)
    assert [r.levelno for r in caplog.records].count(logging.ERROR) == 2
    stored = await rows(job_store)
    assert {k: r["state"] for k, r in stored.items()} == {
        "a-first": "running",
        "c-report": "succeeded",
        "d-dead": "dead",
    }


async def test_a_claim_sent_again_after_its_reply_was_lost_is_still_granted(
    job_store: Store, tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection dies after PostgreSQL committed the claim: the claim is written
    again and must recognise its own row, not refuse itself as a duplicate copy."""
    real_report = Store.report
    lost: list[int] = []

    async def reply_lost_once(self: Store, batch: object) -> set[tuple[str, int]]:
        applied = await real_report(self, batch)  # type: ignore[arg-type]
        if not lost:
            lost.append(len(applied))
            raise asyncpg.InternalClientError("cannot switch to state 12 (on purpose)")
        return applied

    monkeypatch.setattr(Store, "report", reply_lost_once)
    message = job("lost-reply")
    own = claim(message)
    assert await tracker.claim(own)  # granted on the outage path, the row is there
    tracker.report(own)  # what the outage path queues: the same report, sent again
    await asyncio.sleep(0.5)
    assert lost == [1]
    assert await tracker.claim(own)  # its own row: granted again, not a duplicate
    assert not await tracker.claim(claim(message))  # another copy of the same attempt
    row = (await rows(job_store))["lost-reply"]
    assert (row["state"], row["token"]) == ("running", own.token)


async def test_a_broken_protocol_state_replaces_the_pools_connections(job_store: Store) -> None:
    async with job_store.pool.acquire() as conn:
        before = conn.get_server_pid()
    await job_store.recover(asyncpg.InternalClientError("cannot switch to state 15"))
    async with job_store.pool.acquire() as conn:
        assert conn.get_server_pid() != before
    await job_store.recover(RuntimeError("not a connection's fault"))  # leaves them be
