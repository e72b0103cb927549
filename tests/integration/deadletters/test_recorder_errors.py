"""The recorder outlives what a foreign publisher or a failing database throws at it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import pytest

from engine.amqp.consumer import Delivery
from engine.amqp.topology import record_exchange
from engine.deadletters.recorder import Recorder
from engine.deadletters.records import store_dead
from engine.message import H_ATTEMPTS, H_ERROR_MESSAGE, H_REASON
from engine.pg.store import DeadRecord, Store
from engine.settings import Settings
from tests.conftest import AMQP_URL, wait_for
from tests.integration.conftest import StartRecorder


async def publish_dead(
    settings: Settings, body: bytes, headers: dict[str, Any], message_id: str | None = None
) -> None:
    """Publish straight to ``<ns>.dead.record``, as RabbitMQ dead-lettering a foreign message."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(record_exchange(settings.namespace))
        await exchange.publish(
            aio_pika.Message(body, headers=headers, message_id=message_id), routing_key=""
        )


async def row(store: Store, job_id: str) -> dict[str, Any] | None:
    found = await store.pool.fetchrow("SELECT * FROM dead_letters WHERE job_id = $1", job_id)
    return dict(found) if found is not None else None


async def stored(store: Store, job_id: str) -> bool:
    return await row(store, job_id) is not None


async def test_a_huge_attempts_header_and_a_nul_give_a_bare_row_and_recording_goes_on(
    dead_settings: Settings, store: Store, start_recorder: StartRecorder
) -> None:
    await start_recorder()
    await publish_dead(
        dead_settings,
        b'{"type": "dl.foreign", "id": "nul-1", "payload": {"k": 1}}',
        {H_REASON: "retries exhausted", H_ATTEMPTS: 2**40, H_ERROR_MESSAGE: "bad\x00byte"},
    )
    await wait_for(lambda: stored(store, "nul-1"), what="the dead letter with a NUL")
    await publish_dead(dead_settings, b'{"type": "dl.foreign", "id": "next-1"}', {})
    await wait_for(lambda: stored(store, "next-1"), what="the next dead letter")
    bare = await row(store, "nul-1")
    assert bare is not None
    assert bare["error_message"] == "badbyte"
    assert bare["attempts"] == 1  # the header did not fit: the body's attempt 0, plus one
    assert (bare["payload"], bare["headers"]) == (None, {})  # kept bare, raw body only
    assert bare["job_type"] == "dl.foreign"


async def test_a_generation_beyond_32_bits_is_stored_as_generation_0(
    dead_settings: Settings, store: Store, start_recorder: StartRecorder
) -> None:
    await start_recorder()
    await publish_dead(
        dead_settings,
        b'{"type": "dl.foreign", "generation": 3000000000}',
        {"x-death": [{"reason": "delivery_limit", "queue": "x", "count": 20}]},
        message_id="big-gen-amqp",
    )
    await wait_for(lambda: stored(store, "big-gen-amqp"), what="the dead letter")
    found = await row(store, "big-gen-amqp")
    assert found is not None
    assert found["generation"] == 0
    assert found["reason"] == "broker: delivery_limit"


async def test_a_rejected_record_is_kept_bare_with_every_value_fitting_its_column(
    store: Store,
) -> None:
    record = DeadRecord(
        job_id="id\x00-1",
        generation=3_000_000_000,
        job_type="t\x00ype",
        queue="q\x00ueue",
        payload={"k": "v"},
        body=b"raw",
        headers={"h": 1},
        attempts=2**40,
        max_retries=2**40,
        reason="r\x00eason",
        error_type="E\x00rror",
        error_message="m\x00essage",
        traceback="t\x00raceback",
        checkpoint={"page": 1},
        enqueued_at=None,
        died_at=datetime.now(UTC),
        worker="w\x00orker",
    )
    assert await store_dead(store, [record]) == 1
    bare = await row(store, "id-1")
    assert bare is not None
    assert (bare["generation"], bare["attempts"], bare["max_retries"]) == (0, 0, None)
    texts = [bare[k] for k in ("job_type", "queue", "reason", "error_type", "error_message")]
    assert texts == ["type", "queue", "reason", "Error", "message"]
    assert (bare["traceback"], bare["worker"], bare["body"]) == ("traceback", "worker", b"raw")


async def test_a_batch_failing_with_a_non_connection_error_is_retried_and_acked_only_once_stored(
    dead_settings: Settings,
    store: Store,
    start_recorder: StartRecorder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[str] = []
    real_insert, real_ack = Recorder._insert, Delivery.ack

    async def insert_failing_once(self: Recorder, records: list[DeadRecord]) -> int:
        if "failed" not in events:
            events.append("failed")
            raise asyncpg.exceptions.InternalServerError("could not read block (on purpose)")
        count = await real_insert(self, records)
        events.append("stored")
        return count

    async def spied_ack(self: Delivery, multiple: bool = False) -> None:
        events.append("acked")
        await real_ack(self, multiple=multiple)

    monkeypatch.setattr(Recorder, "_insert", insert_failing_once)
    monkeypatch.setattr(Delivery, "ack", spied_ack)
    await start_recorder()
    await publish_dead(dead_settings, b'{"type": "dl.foreign", "id": "internal-1"}', {})
    await wait_for(lambda: stored(store, "internal-1"), what="the batch after the failure")
    await wait_for(lambda: "acked" in events, what="the ack")
    assert events == ["failed", "stored", "acked"]
    [logged] = [r for r in caplog.records if r.name == "lazarus.recorder" and r.exc_info]
    assert logged.exc_info is not None
    assert isinstance(logged.exc_info[1], asyncpg.exceptions.InternalServerError)


async def test_a_recorder_task_that_ends_on_its_own_is_logged(
    start_recorder: StartRecorder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken_run(self: Recorder) -> None:
        raise RuntimeError("a bug in the recorder loop (on purpose)")

    monkeypatch.setattr(Recorder, "_run", broken_run)
    caplog.set_level(logging.ERROR, logger="lazarus.recorder")
    await start_recorder()

    def logged() -> bool:
        return any(r.name == "lazarus.recorder" and r.exc_info for r in caplog.records)

    await wait_for(logged, timeout=5, what="the log of the recorder's death")
