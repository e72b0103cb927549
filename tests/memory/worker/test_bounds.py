"""Whatever a producer sends gets exactly one outcome: the engine's bounds of
tests/integration/test_bounds.py on the doubles. (Whether PostgreSQL can index what
the engine stores stays pinned there.)"""

from __future__ import annotations

import secrets
from typing import Any

import orjson
import pytest

from engine import JobContext, RetryPolicy
from engine.amqp.topology import record_exchange, work_exchange
from engine.message import H_REASON
from engine.testing import Lazarus
from tests.bodies import MARK, UNFIT


def register(lz: Lazarus, ran: dict[str, int]) -> None:
    @lz.handler("bounds.fails", policy=RetryPolicy(attempts=1, max_retries=1, retry_delay=0.05))
    async def fails(ctx: JobContext) -> None:
        ran[ctx.job_id] = ran.get(ctx.job_id, 0) + 1
        raise RuntimeError("fails on purpose")

    @lz.handler("bounds.good")
    async def good(ctx: JobContext) -> None:
        ran[ctx.job_id] = ran.get(ctx.job_id, 0) + 1


async def publish(lz: Lazarus, body: bytes, headers: dict[str, Any] | None = None) -> None:
    """Publish to the work exchange as another service would (no AMQP message id)."""
    await lz.broker.publish(work_exchange(lz.settings.namespace), "default", body, headers, None)


@pytest.mark.parametrize("case", sorted(UNFIT))
async def test_a_value_past_its_bound_dies_once_as_malformed_and_the_worker_goes_on(
    lz: Lazarus, case: str
) -> None:
    """Rule: an id past 255 bytes or with a control character, or a redelivery count
    past 32 bits, dies once as malformed (never run, never retried), body untouched."""
    ran: dict[str, int] = {}
    register(lz, ran)
    fields, headers, text = UNFIT[case]
    body = orjson.dumps({"type": "bounds.fails"} | fields)
    await publish(lz, body, headers)
    await publish(lz, orjson.dumps({"id": "good-1", "type": "bounds.good"}))
    await lz.drain()
    [letter] = lz.store.dead_letters.values()
    assert letter["reason"] == "malformed message"
    assert letter["error_type"] == "MessageError"
    assert text in letter["error_message"]
    assert ran == {"good-1": 1}
    assert not any(job_id.startswith(MARK) for job_id in ran)
    assert len(lz.retained()) == 1
    assert bytes(letter["body"]) == body  # the original id stays in the stored body


async def test_a_dead_letter_with_an_unfit_id_does_not_hold_back_the_ones_behind_it(
    lz: Lazarus,
) -> None:
    """Rule: the recorder stores a dead letter whose body's id cannot be a job id under
    an id that fits (at most 255 bytes), the body as it came, and goes on with the ones
    behind. (A 10 KB error type is cut only once PostgreSQL refuses the index entry, which
    the in-memory store does not model: that case stays in tests/integration.)"""
    noise = secrets.token_hex(5120)
    body = orjson.dumps({"type": "bounds.foreign", "id": noise})
    headers: dict[str, Any] = {H_REASON: "retries exhausted"}
    record = record_exchange(lz.settings.namespace)
    await lz.broker.publish(record, "", body, headers, None)
    for i in range(3):
        after = orjson.dumps({"type": "bounds.foreign", "id": f"after-{i}"})
        await lz.broker.publish(record, "", after, {}, None)
    await lz.drain()
    rows = list(lz.store.dead_letters.values())
    assert len(rows) == 4
    assert {r["job_id"] for r in rows} >= {"after-0", "after-1", "after-2"}
    [unfit] = [r for r in rows if not r["job_id"].startswith("after-")]
    assert bytes(unfit["body"]) == body
    assert len(unfit["job_id"].encode()) <= 255 and len(unfit["error_type"]) <= 255
