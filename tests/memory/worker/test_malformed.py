"""Bodies a worker cannot run go to the dead letters with a reason; the worker carries
on. The engine's rules of tests/integration/test_malformed.py on the doubles."""

from __future__ import annotations

import orjson
import pytest

from engine import JobContext
from engine.message import H_ERROR_MESSAGE, H_ERROR_TYPE, H_REASON
from engine.testing import Lazarus
from tests.bodies import BAD_BODIES
from tests.memory.conftest import NOWHERE


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
async def test_bad_body_is_dead_lettered_with_its_reason_and_the_worker_carries_on(
    lz: Lazarus, case: str
) -> None:
    """Rule: a body that is not a job (bad JSON, fields, version) dies once as "malformed
    message", one of an unknown type as "unknown job type", body untouched; the job
    behind it runs."""
    raw, reason, text = BAD_BODIES[case]
    done: list[str] = []

    @lz.handler("malformed.good")
    async def good(ctx: JobContext) -> None:
        done.append(ctx.job_id)

    await lz.publish_raw(raw, message_id="bad-1")
    await lz.publish_raw(orjson.dumps({"id": "good-1", "type": "malformed.good"}))
    await lz.drain()
    [dead] = lz.retained()
    assert dead.message_id == "bad-1"
    assert dead.body == raw
    assert dead.headers[H_REASON] == reason
    assert text in str(dead.headers[H_ERROR_MESSAGE])
    assert dead.headers[H_ERROR_TYPE] in ("MessageError", "UnknownJobType")
    assert done == ["good-1"]
    [row] = await lz.dead_letters("bad-1")
    assert row.reason == reason


async def test_oversized_body_is_dead_lettered_unread() -> None:
    """Rule: a body over max_message_bytes dies as malformed before it is parsed."""
    settings = NOWHERE.model_copy(update={"max_message_bytes": 2048})
    async with Lazarus(settings=settings) as lz:
        ran: list[str] = []

        @lz.handler("malformed.good")
        async def good(ctx: JobContext) -> None:
            ran.append(ctx.job_id)

        raw = orjson.dumps({"type": "malformed.good", "payload": "x" * 4096})
        await lz.publish_raw(raw, message_id="too-big")
        await lz.drain()
        [dead] = lz.retained()
        assert dead.message_id == "too-big"
        assert dead.headers[H_REASON] == "malformed message"
        message = str(dead.headers[H_ERROR_MESSAGE])
        assert f"{len(raw)} bytes, more than the 2048 allowed" in message
        assert ran == []


async def test_unknown_job_type_is_dead_lettered_under_the_id_in_its_body(lz: Lazarus) -> None:
    """Rule: a parsed body's own id names its dead letter, not the AMQP message id."""
    raw = orjson.dumps({"id": "job-42", "type": "malformed.unknown", "payload": [1]})
    await lz.publish_raw(raw, message_id="amqp-id")
    await lz.drain()
    [dead] = lz.retained()
    assert dead.message_id == "job-42"
    assert dead.headers[H_REASON] == "unknown job type"
