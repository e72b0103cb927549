"""Workflows on RabbitMQ and PostgreSQL: readiness decided by the database, a fan-in run
once per generation with many workers finishing items at once, a dead item that holds
the workflow until it is moved back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine import JobContext, handler
from engine.admin.facade import Admin
from engine.errors import Permanent
from engine.filters import DeadFilter
from engine.pg.store import Store
from engine.settings import Settings
from engine.workflows import INPUT, FanOut, Step, Workflow, start_workflow
from tests.conftest import wait_for
from tests.integration.lifecycle.conftest import tracking_worker

pytestmark = pytest.mark.timeout(90)

fan_in_runs: list[tuple[str, int]] = []
broken: set[str] = set()


@handler("itw.split")
async def split(ctx: JobContext) -> Any:
    return [f"part-{i}" for i in range(ctx.payload["parts"])]


@handler("itw.load")
async def load(ctx: JobContext) -> Any:
    await asyncio.sleep(0)
    if ctx.payload in broken:
        raise Permanent(f"cannot load {ctx.payload}")
    return len(ctx.payload)


@handler("itw.total")
async def total(ctx: JobContext) -> Any:
    values = [v async for _, v in ctx.item_results("load")]
    assert ctx.workflow is not None
    fan_in_runs.append((ctx.workflow.workflow_id, len(values)))
    return sum(values)


FLOW = Workflow(
    "itw.import",
    [
        Step("split", "itw.split"),
        FanOut("load", "itw.load", items_from="split"),
        Step("total", "itw.total", after=("load",)),
    ],
)


async def _state(store: Store, workflow_id: str) -> str | None:
    row = await store.get_workflow(workflow_id)
    return None if row is None else str(row["state"])


async def test_fan_in_runs_once_while_workers_race_on_the_last_items(
    dead_settings: Settings, store: Store
) -> None:
    async with (
        tracking_worker(dead_settings, concurrency=32) as one,
        tracking_worker(dead_settings, concurrency=32),
    ):
        started = await start_workflow(store, one.broker, FLOW, {"parts": 400})

        async def done() -> bool:
            return await _state(store, started.workflow_id) == "succeeded"

        await wait_for(done, timeout=60, what="the workflow to succeed")
    assert [r for r in fan_in_runs if r[0] == started.workflow_id] == [(started.workflow_id, 400)]
    progress = await store.workflow_progress(started.workflow_id)
    assert progress == {"succeeded": 402}
    (total_row,) = [
        s for s in await store.workflow_steps(started.workflow_id) if s["step"] == "total"
    ]
    assert total_row["result"] == sum(len(f"part-{i}") for i in range(400))


async def test_a_dead_item_holds_the_fan_in_until_it_is_requeued(
    dead_settings: Settings, store: Store
) -> None:
    flow = Workflow(
        "itw.files",
        [FanOut("load", "itw.load", items_from=INPUT), Step("total", "itw.total", after=("load",))],
    )
    broken.add("bad-file")
    async with tracking_worker(dead_settings) as worker:
        started = await start_workflow(store, worker.broker, flow, ["a", "bad-file", "ccc"])

        async def failed() -> bool:
            return await _state(store, started.workflow_id) == "failed"

        await wait_for(failed, what="the workflow to fail")
        async with Admin(dead_settings, actor="operator") as admin:
            dead = await admin.list_dead(DeadFilter())
            assert [d.job_id for d in dead] == [f"{started.workflow_id}/0/load[1]"]
            row = await store.get_workflow(started.workflow_id)
            assert row is not None and "cannot load bad-file" in row["cause"]
            assert not [r for r in fan_in_runs if r[0] == started.workflow_id]
            broken.clear()
            await admin.requeue_one(dead[0].job_id)

        async def succeeded() -> bool:
            return await _state(store, started.workflow_id) == "succeeded"

        await wait_for(succeeded, what="the workflow to go on and succeed")
    assert [r for r in fan_in_runs if r[0] == started.workflow_id] == [(started.workflow_id, 3)]
