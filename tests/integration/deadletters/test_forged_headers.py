"""Names a foreign publisher puts in a dead letter's headers cannot break what lists them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from engine.admin.facade import Admin
from engine.amqp.broker import Broker
from engine.amqp.topology import record_exchange
from engine.deadletters.recorder import Recorder
from engine.deadletters.records import INVALID_NAME
from engine.errors import JobStateConflict, PublishFailed
from engine.filters import DeadFilter
from engine.message import H_QUEUE, H_REASON
from engine.pg.store import DeadRecord, Store
from engine.settings import Settings
from tests.conftest import AMQP_URL, wait_for

LONG = "q" * 5000


@pytest.fixture
async def recorder(dead_settings: Settings, store: Store) -> AsyncIterator[Recorder]:
    async with Broker(dead_settings, name="test-forged-headers") as broker:
        started = Recorder(broker, store)
        await started.start()
        yield started
        await started.stop()


async def publish_forged(settings: Settings, job_id: str, body: bytes, queue: str) -> None:
    """Publish to ``<ns>.dead.record`` as any producer in the vhost can."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(record_exchange(settings.namespace))
        message = aio_pika.Message(
            body, headers={H_REASON: "forged", H_QUEUE: queue}, message_id=job_id
        )
        await exchange.publish(message, routing_key="")


async def stored_row(store: Store, job_id: str) -> dict[str, Any]:
    async def found() -> bool:
        return await store.pool.fetchval("SELECT 1 FROM dead_letters WHERE job_id = $1", job_id)

    await wait_for(found, what=f"dead letter {job_id}")
    row = await store.pool.fetchrow("SELECT * FROM dead_letters WHERE job_id = $1", job_id)
    return dict(row)


@pytest.mark.parametrize("header", ["bad queue name!", LONG], ids=["bad-characters", "5000-chars"])
async def test_an_unusable_queue_header_is_stored_as_invalid_and_kept_in_the_headers(
    dead_settings: Settings, store: Store, recorder: Recorder, header: str
) -> None:
    await publish_forged(dead_settings, "forged-1", b"not json at all", header)
    row = await stored_row(store, "forged-1")
    assert row["queue"] == INVALID_NAME
    assert row["headers"][H_QUEUE] == header


async def test_an_unusable_queue_header_gives_way_to_the_bodys_queue(
    dead_settings: Settings, store: Store, recorder: Recorder
) -> None:
    body = b'{"v": 99, "id": "forged-2", "type": "dl.foreign", "queue": "orders"}'
    await publish_forged(dead_settings, "forged-2", body, "bad queue name!")
    assert (await stored_row(store, "forged-2"))["queue"] == "orders"


async def test_a_usable_queue_header_is_stored_as_it_is(
    dead_settings: Settings, store: Store, recorder: Recorder
) -> None:
    await publish_forged(dead_settings, "forged-3", b"not json at all", "billing")
    assert (await stored_row(store, "forged-3"))["queue"] == "billing"


def old_row(job_id: str, *, queue: str, job_type: str) -> DeadRecord:
    """A dead letter as code that did not check names could have stored it."""
    return DeadRecord(
        job_id=job_id,
        generation=0,
        job_type=job_type,
        queue=queue,
        payload=None,
        body=b"{}",
        headers={},
        attempts=1,
        max_retries=None,
        reason="forged",
        error_type="Forged",
        error_message="",
        traceback="",
        checkpoint=None,
        enqueued_at=None,
        died_at=datetime.now(UTC),
        worker="",
    )


async def test_listings_skip_names_no_queue_or_type_can_have(
    dead_settings: Settings, store: Store
) -> None:
    usable = old_row("old-0", queue="billing", job_type="dl.usable")
    await store.insert_dead(
        [
            usable,
            replace(usable, job_id="old-1", queue="bad queue name!", job_type="bad type!"),
            replace(usable, job_id="old-2", queue=LONG, job_type="t" * 5000),
            replace(usable, job_id="old-3", queue=INVALID_NAME, job_type=""),
        ]
    )
    async with Admin(dead_settings, actor="operator") as admin:
        control = admin.jobs
        queues = await control.list_queues()
        types = await control.list_types()
        with pytest.raises(ValueError, match="queue name 'bad queue name!'"):
            await control.list_queues(["bad queue name!"])
    assert [q.queue for q in queues] == ["billing", "default"]
    assert [t.job_type for t in types] == ["dl.usable"]


async def test_no_job_is_routed_to_a_queue_no_queue_can_have(dead_settings: Settings) -> None:
    async with Broker(dead_settings, name="test-forged-headers") as broker:
        for name in (INVALID_NAME, "bad queue name!", LONG):
            with pytest.raises(PublishFailed, match="cannot route a job to it: queue name"):
                await broker.ensure_work_queue(name)


async def test_a_dead_letter_whose_queue_no_queue_can_have_stays_dead_and_says_why(
    dead_settings: Settings, store: Store
) -> None:
    usable = old_row("fine", queue="billing", job_type="dl.usable")
    await store.insert_dead([usable, replace(usable, job_id="stuck", queue=INVALID_NAME)])
    async with Admin(dead_settings, actor="operator") as admin:
        assert await admin.requeue(DeadFilter(job_type="dl.usable")) == 1  # only "fine"
        with pytest.raises(JobStateConflict, match="its queue '\\(invalid\\)' cannot take jobs"):
            await admin.requeue_one("stuck")
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 0
    [row] = await store.history("stuck")
    assert row["status"] == "dead"
