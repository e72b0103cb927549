"""Whatever a producer sends within what RabbitMQ carries gets exactly one outcome.

A value past the wire format's bounds (an id longer than an AMQP short string or with a
control character, a redelivery count past 32 bits) dies once as a malformed message; a
dead letter PostgreSQL cannot store as it is never holds back the ones behind it.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import aio_pika
import orjson
import pytest

from engine import JobContext, RetryPolicy, handler
from engine.amqp.topology import record_exchange, retained_queue, work_exchange
from engine.message import H_ERROR_TYPE, H_REASON
from engine.pg.store import Store
from engine.settings import Settings
from tests.bodies import MARK, UNFIT
from tests.conftest import AMQP_URL, queue_depth, wait_for
from tests.integration.conftest import StartRecorder
from tests.integration.deadletters.test_recording import running

pytestmark = pytest.mark.timeout(60)

ran: dict[str, int] = {}


@handler("bounds.fails", policy=RetryPolicy(attempts=1, max_retries=1, retry_delay=0.05))
async def fails(ctx: JobContext) -> None:
    """Needs a retry copy, then a dead-letter copy: both carry the job id."""
    ran[ctx.job_id] = ran.get(ctx.job_id, 0) + 1
    raise RuntimeError("fails on purpose")


@handler("bounds.good")
async def good(ctx: JobContext) -> None:
    ran[ctx.job_id] = ran.get(ctx.job_id, 0) + 1


async def publish(settings: Settings, body: bytes, headers: dict[str, Any] | None = None) -> None:
    """Publish to the work exchange as another service would (no AMQP message id)."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(work_exchange(settings.namespace))
        message = aio_pika.Message(
            body, headers=headers, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )
        await exchange.publish(message, routing_key="default")


async def dead_rows(store: Store) -> list[dict[str, Any]]:
    return [dict(r) for r in await store.pool.fetch("SELECT * FROM dead_letters ORDER BY id")]


async def row_count_is(store: Store, count: int) -> bool:
    return len(await dead_rows(store)) == count


@pytest.mark.parametrize("case", sorted(UNFIT))
async def test_a_value_past_its_bound_dies_once_as_malformed_and_the_worker_goes_on(
    dead_settings: Settings, store: Store, case: str
) -> None:
    fields, headers, text = UNFIT[case]
    body = orjson.dumps({"type": "bounds.fails"} | fields)
    good_id = str(uuid.uuid4())
    async with running(dead_settings, store=True):
        await publish(dead_settings, body, headers)
        await wait_for(lambda: row_count_is(store, 1), what=f"the dead letter of the {case}")
        await publish(dead_settings, orjson.dumps({"id": good_id, "type": "bounds.good"}))
        await wait_for(lambda: good_id in ran, what="a normal job after it")
    [row] = await dead_rows(store)
    assert row["reason"] == "malformed message"
    assert row["error_type"] == "MessageError"
    assert text in row["error_message"]
    assert bytes(row["body"]) == body  # the original id stays in the stored body
    assert not any(job_id.startswith(MARK) for job_id in ran)  # never run
    assert await queue_depth(retained_queue(dead_settings.namespace)) == 1


async def publish_to_recorder(settings: Settings, body: bytes, headers: dict[str, Any]) -> None:
    """Publish straight to ``<ns>.dead.record``, as any producer in the vhost may."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(record_exchange(settings.namespace))
        await exchange.publish(aio_pika.Message(body, headers=headers), routing_key="")


@pytest.mark.parametrize("case", ["10 KB id in the body", "10 KB error type header"])
async def test_an_unstorable_dead_letter_does_not_hold_back_the_ones_behind_it(
    dead_settings: Settings, store: Store, start_recorder: StartRecorder, case: str
) -> None:
    noise = secrets.token_hex(5120)  # 10 KB that do not compress: no index entry holds them
    if case == "10 KB id in the body":
        body = orjson.dumps({"type": "bounds.foreign", "id": noise})
        headers: dict[str, Any] = {H_REASON: "retries exhausted"}
    else:
        body = orjson.dumps({"type": "bounds.foreign", "id": "long-error-type"})
        headers = {H_REASON: "retries exhausted", H_ERROR_TYPE: noise}
    await publish_to_recorder(dead_settings, body, headers)
    for i in range(3):
        await publish_to_recorder(
            dead_settings, orjson.dumps({"type": "bounds.foreign", "id": f"after-{i}"}), {}
        )
    await start_recorder()
    await wait_for(lambda: row_count_is(store, 4), what="the good dead letters and the bad one")
    rows = await dead_rows(store)
    assert {r["job_id"] for r in rows} >= {"after-0", "after-1", "after-2"}
    [unfit] = [r for r in rows if not r["job_id"].startswith("after-")]
    assert bytes(unfit["body"]) == body
    assert len(unfit["job_id"].encode()) <= 255 and len(unfit["error_type"]) <= 255
