"""The tracker's batching against a fake store: row order, conflicts and outages."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from engine.message import JobMessage
from engine.outcome import ErrorInfo
from engine.states import JobState
from engine.worker.tracker import Tracker, Transition, started


class FakeStore:
    """Records each statement's job ids; raises the queued errors first, one per call."""

    def __init__(self, *errors: BaseException, refuse: bool = False) -> None:
        self.errors = list(errors)
        self.refuse = refuse  # answer like PostgreSQL refusing every transition
        self.calls: list[list[str]] = []

    async def report(self, rows: Any) -> set[tuple[str, int]]:
        self.calls.append([row[0] for row in rows])
        if self.errors:
            raise self.errors.pop(0)
        return set() if self.refuse else {(row[0], row[2]) for row in rows}

    async def recover(self, exc: BaseException) -> None:
        self.recovered = exc


def tracker(store: FakeStore, linger: float = 0.05) -> Tracker:
    t = Tracker(store, linger=linger)  # type: ignore[arg-type]
    t.start()
    return t


def claim_of(job_id: str) -> Transition:
    return started(JobMessage(type="t", payload={}, id=job_id), "w", 0)


async def test_rows_are_sent_in_job_id_order_one_per_job() -> None:
    store = FakeStore()
    t = tracker(store)
    ids = ["c", "a", "d", "b"]
    t.report(Transition(JobMessage(type="t", payload={}, id="d"), JobState.SUCCEEDED, "w"))
    granted = await asyncio.gather(*(t.claim(claim_of(i)) for i in ids))
    await t.stop()
    assert store.calls == [["a", "b", "c", "d"]]
    assert granted == [True, True, False, True]  # d's claim lost to its later success


async def test_a_deadlocked_batch_is_tried_again_and_answered_by_the_database() -> None:
    store = FakeStore(
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.SerializationError("could not serialize access"),
        refuse=True,
    )
    t = tracker(store)
    granted = await asyncio.gather(t.claim(claim_of("b")), t.claim(claim_of("a")))
    await t.stop()
    assert granted == [False, False]  # refused by the third try, not granted blindly
    assert store.calls == [["a", "b"]] * 3


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_restarting_database_keeps_progress_reports_for_later(
    error: BaseException,
) -> None:
    store = FakeStore(error)
    t = tracker(store, linger=0.001)
    t.report(Transition(JobMessage(type="t", payload={}, id="a"), JobState.SUCCEEDED, "w"))
    await t.stop()  # waits for the pass after the outage pause
    assert store.calls == [["a"], ["a"]]
    assert t.written == 1


async def test_a_failure_with_an_error_is_written_before_the_jobs_next_run() -> None:
    store = FakeStore()
    t = tracker(store)
    first = JobMessage(type="t", payload={}, id="a")
    failed = Transition(first, JobState.RETRYING, "w", error=ErrorInfo("E", "m", "tb"))
    bare = Transition(JobMessage(type="t", payload={}, id="b"), JobState.RETRYING, "w")
    t.report(failed)
    t.report(bare)  # no error: overtaken by its next run in the same statement
    granted = await asyncio.gather(
        t.claim(started(replace(first, attempt=1), "w", 0)),
        t.claim(started(replace(bare.message, attempt=1), "w", 0)),
    )
    await t.stop()
    assert granted == [True, True]
    assert store.calls == [["a", "b"], ["a"]]  # a's retry first, then its run


async def test_a_database_lost_between_two_rounds_settles_the_rest_as_an_outage() -> None:
    """Rounds after the one that failed are not left waiting: a claim runs anyway."""

    class LostAfterFirst(FakeStore):
        async def report(self, rows: Any) -> set[tuple[str, int]]:
            if self.calls:
                self.calls.append([row[0] for row in rows])
                raise ConnectionRefusedError("gone")
            return await super().report(rows)

    store = LostAfterFirst()
    first = JobMessage(type="t", payload={}, id="a")
    error = ErrorInfo("E", "m", "tb")
    t = tracker(store)
    t.report(Transition(first, JobState.RETRYING, "w", error=error))
    second = replace(first, attempt=1)
    t.report(Transition(second, JobState.RETRYING, "w", error=error))
    granted = await asyncio.wait_for(t.claim(started(replace(first, attempt=2), "w", 0)), 5)
    await t.stop(timeout=0.2)
    assert granted is True  # a claim runs when PostgreSQL cannot answer
    assert store.calls[0] == ["a"]
