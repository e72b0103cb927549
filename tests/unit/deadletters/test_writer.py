"""The worker's dead-letter writer: many deaths per insert, and a failing database costs no wait."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.deadletters.writer import DeadLetterWriter
from engine.errors import ServiceUnavailable
from engine.pg.store import DeadRecord

RECORD = DeadRecord(
    job_id="j",
    generation=0,
    job_type="t",
    queue="default",
    payload=None,
    body=b"{}",
    headers={},
    attempts=1,
    max_retries=0,
    reason="permanent error",
    error_type="RuntimeError",
    error_message="boom",
    traceback="",
    checkpoint=None,
    enqueued_at=None,
    died_at=datetime.now(UTC),
    worker="w",
)


class FakeStore:
    """Records each insert's batch; fails or hangs while told to."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.fail: BaseException | None = None
        self.hang = False

    async def insert_dead(self, records: Any) -> int:
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail is not None:
            raise self.fail
        self.batches.append([r.job_id for r in records])
        return len(records)

    async def recover(self, exc: BaseException) -> None:
        """A real store replaces its connections after a protocol error."""


def writer(store: FakeStore, **options: float) -> DeadLetterWriter:
    w = DeadLetterWriter(store, **options)  # type: ignore[arg-type]
    w.start()
    return w


async def test_deaths_of_one_moment_share_one_insert() -> None:
    store = FakeStore()
    w = writer(store, linger=0.01)
    records = [replace(RECORD, job_id=f"j{i}") for i in range(50)]
    await asyncio.gather(*(w.write(r) for r in records))
    await w.stop()
    assert store.batches == [[f"j{i}" for i in range(50)]]
    assert w.stored == 50


async def test_a_failed_insert_fails_its_batch_and_refuses_at_once_for_a_while() -> None:
    store = FakeStore()
    store.fail = ConnectionRefusedError("PostgreSQL is down")
    w = writer(store, pause=0.3)
    with pytest.raises(ServiceUnavailable, match="ConnectionRefusedError"):
        await w.write(RECORD)
    store.fail = None  # back, but the writer does not ask until the pause is over
    with pytest.raises(ServiceUnavailable, match="failed a moment ago"):
        await w.write(RECORD)
    assert store.batches == []
    await asyncio.sleep(0.35)
    await w.write(RECORD)
    await w.stop()
    assert store.batches == [["j"]]


async def test_a_hanging_database_gives_up_after_the_timeout() -> None:
    store = FakeStore()
    store.hang = True
    w = writer(store, timeout=0.2)
    with pytest.raises(ServiceUnavailable, match="TimeoutError"):  # not an hour's wait
        await w.write(RECORD)
    await w.stop()


async def test_a_stopped_writer_refuses() -> None:
    w = writer(FakeStore())
    await w.stop()
    with pytest.raises(ServiceUnavailable):
        await w.write(RECORD)
