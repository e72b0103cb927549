"""Bodies a worker cannot run go to the dead letters with a reason; the worker carries on."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import orjson
import pytest

from engine import JobContext, Worker, handler
from engine.amqp.topology import retained_queue
from engine.message import H_ERROR_MESSAGE, H_ERROR_TYPE, H_REASON
from engine.settings import Settings
from tests.bodies import BAD_BODIES
from tests.conftest import publish_raw, queue_depth, take_dead_letters, wait_for

pytestmark = pytest.mark.timeout(30)

StartWorker = Callable[..., Awaitable[Worker]]

done: set[str] = set()


@handler("malformed.good")
async def good(ctx: JobContext) -> None:
    done.add(ctx.job_id)


# Every case is pinned on the in-memory broker (tests/memory/worker/test_malformed.py);
# here one body that is not a job and one of an unknown type go the whole way.
@pytest.mark.parametrize("case", ["not json", "unknown job type"])
async def test_bad_body_is_dead_lettered_with_its_reason_and_the_worker_carries_on(
    settings: Settings, start_worker: StartWorker, case: str
) -> None:
    raw, reason, text = BAD_BODIES[case]
    await start_worker(settings)
    bad_id, good_id = f"bad-{uuid.uuid4()}", str(uuid.uuid4())
    await publish_raw(settings, raw, message_id=bad_id)
    await publish_raw(settings, orjson.dumps({"id": good_id, "type": "malformed.good"}))

    [dead] = await take_dead_letters(settings, 1)
    assert dead.message_id == bad_id
    assert dead.body == raw
    assert dead.headers[H_REASON] == reason
    assert text in str(dead.headers[H_ERROR_MESSAGE])
    assert dead.headers[H_ERROR_TYPE] in ("MessageError", "UnknownJobType")
    await wait_for(lambda: good_id in done, what="the good job after the bad one")
    assert await queue_depth(retained_queue(settings.namespace)) == 0


async def test_oversized_body_is_dead_lettered_unread(
    quorum_settings: Settings, start_worker: StartWorker
) -> None:
    config = quorum_settings.model_copy(update={"max_message_bytes": 2048})
    await start_worker(config)
    raw = orjson.dumps({"type": "malformed.good", "payload": "x" * 4096})
    await publish_raw(config, raw, message_id="too-big")
    [dead] = await take_dead_letters(config, 1)
    assert dead.message_id == "too-big"
    assert dead.headers[H_REASON] == "malformed message"
    assert f"{len(raw)} bytes, more than the 2048 allowed" in str(dead.headers[H_ERROR_MESSAGE])


async def test_unknown_job_type_is_dead_lettered_under_the_id_in_its_body(
    quorum_settings: Settings, start_worker: StartWorker
) -> None:
    await start_worker(quorum_settings)
    raw = orjson.dumps({"id": "job-42", "type": "malformed.unknown", "payload": [1]})
    await publish_raw(quorum_settings, raw, message_id="amqp-id")
    [dead] = await take_dead_letters(quorum_settings, 1)
    assert dead.message_id == "job-42"
    assert dead.headers[H_REASON] == "unknown job type"
