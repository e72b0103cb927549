"""The successes of many steps are written together, one transaction for what arrives
while the previous one runs; one that cannot be written fails only its own step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from engine.memory.store import InMemoryStore
from engine.message import JobMessage, StepRef
from engine.outcome import Outcome
from engine.pg.errors import DB_REJECTED
from engine.states import Verdict
from engine.testing import Lazarus
from engine.workflows import INPUT, FanOut, Step, Workflow, start_workflow
from engine.workflows.completion import StepCompletion

FLOW = Workflow(
    "batch", [FanOut("items", "b_item", items_from=INPUT), Step("end", "b_end", after=("items",))]
)


def success(workflow_id: str, index: int, result: Any) -> Outcome:
    ref = StepRef(workflow_id, 0, "items", index)
    message = JobMessage(type="b_item", payload=index, id=ref.job_id, workflow=ref)
    return Outcome(Verdict.SUCCEEDED, message, ref.job_id, result=result)


@asynccontextmanager
async def counted(store: InMemoryStore) -> AsyncIterator[list[int]]:
    """Count the store's workflow transactions while the block runs."""
    opened: list[int] = []
    real = store.workflow_txn

    @asynccontextmanager
    async def counting() -> AsyncIterator[Any]:
        opened.append(1)
        async with real() as txn:
            yield txn

    store.workflow_txn = counting  # type: ignore[method-assign]
    try:
        yield opened
    finally:
        store.workflow_txn = real  # type: ignore[method-assign]


async def test_two_hundred_successes_at_once_take_a_few_transactions(lz: Lazarus) -> None:
    started = await start_workflow(lz.store, None, FLOW, list(range(200)))
    hook = StepCompletion(lz.store, lz.store, lz.broker)
    async with counted(lz.store) as opened:
        done = await asyncio.gather(*(hook(success(started.workflow_id, i, i)) for i in range(200)))
    assert done == [()] * 200
    assert len(opened) <= 3
    shown = await lz.workflow(started.workflow_id)
    assert shown["steps"]["items"] == "succeeded" and shown["steps"]["end"] == "pending"


async def test_a_success_that_cannot_be_written_fails_only_its_own_step(lz: Lazarus) -> None:
    started = await start_workflow(lz.store, None, FLOW, list(range(3)))
    hook = StepCompletion(lz.store, lz.store, lz.broker)
    outcomes = [success(started.workflow_id, 0, 0), success(started.workflow_id, 1, "a\x00b"),
                success(started.workflow_id, 2, 2)]  # fmt: skip
    answers = await asyncio.gather(*(hook(o) for o in outcomes), return_exceptions=True)
    assert answers[0] == () and answers[2] == ()
    assert isinstance(answers[1], DB_REJECTED)
    steps = (await lz.workflow(started.workflow_id))["steps"]
    assert [steps[f"items[{i}]"] for i in range(3)] == ["succeeded", "pending", "succeeded"]


@pytest.mark.lazarus(concurrency=64)
async def test_a_fan_out_through_the_worker_fans_in_once(lz: Lazarus) -> None:
    ends: list[int] = []

    @lz.handler("b_item")
    async def item(ctx: Any) -> int:
        return int(ctx.payload)

    @lz.handler("b_end")
    async def end(ctx: Any) -> int:
        total = sum([v async for _, v in ctx.item_results("items")])
        ends.append(total)
        return total

    started = await lz.start_workflow(FLOW, list(range(500)))
    await lz.drain(timeout=60)
    assert (await lz.workflow(started.workflow_id))["state"] == "succeeded"
    assert ends == [sum(range(500))]
