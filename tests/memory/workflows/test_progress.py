"""Workflow progress on the in-memory store: order, results, fan-out and fan-in."""

from __future__ import annotations

from typing import Any

import pytest

from engine.context import JobContext
from engine.errors import Permanent
from engine.testing import Lazarus
from engine.workflows import INPUT, FanOut, Step, Workflow


async def test_steps_run_in_order_and_pass_results(lz: Lazarus) -> None:
    order: list[str] = []

    @lz.handler("wf_a")
    async def a(ctx: JobContext) -> Any:
        order.append("a")
        return {"n": ctx.payload["n"] + 1}

    @lz.handler("wf_b")
    async def b(ctx: JobContext) -> Any:
        order.append("b")
        return (await ctx.result_of("a"))["n"] * 10

    @lz.handler("wf_c")
    async def c(ctx: JobContext) -> Any:
        order.append("c")
        return await ctx.result_of("b") + 1

    chain = Workflow(
        "chain",
        [Step("a", "wf_a"), Step("b", "wf_b", after=("a",)), Step("c", "wf_c", after=("b",))],
    )
    started = await lz.start_workflow(chain, {"n": 1})
    await lz.drain()
    workflow = await lz.workflow(started.workflow_id)
    assert order == ["a", "b", "c"]
    assert workflow["state"] == "succeeded"
    assert workflow["results"] == {"a": {"n": 2}, "b": 20, "c": 21}


async def test_fan_out_from_a_step_then_fan_in_once(lz: Lazarus) -> None:
    fan_in_runs: list[list[int]] = []

    @lz.handler("wf_list")
    async def listing(ctx: JobContext) -> Any:
        return list(range(ctx.payload))

    @lz.handler("wf_square")
    async def square(ctx: JobContext) -> Any:
        return ctx.payload * ctx.payload

    @lz.handler("wf_sum")
    async def total(ctx: JobContext) -> Any:
        values = [v async for _, v in ctx.item_results("squares")]
        fan_in_runs.append(values)
        return sum(values)

    flow = Workflow(
        "squares",
        [
            Step("list", "wf_list"),
            FanOut("squares", "wf_square", items_from="list"),
            Step("sum", "wf_sum", after=("squares",)),
        ],
    )
    started = await lz.start_workflow(flow, 1200)
    await lz.drain(timeout=60)
    workflow = await lz.workflow(started.workflow_id)
    assert workflow["state"] == "succeeded"
    assert len(fan_in_runs) == 1
    assert fan_in_runs[0] == [i * i for i in range(1200)]
    assert workflow["results"]["sum"] == sum(i * i for i in range(1200))


async def test_an_empty_fan_out_succeeds_at_once(lz: Lazarus) -> None:
    @lz.handler("wf_item")
    async def item(ctx: JobContext) -> None:
        raise AssertionError("no item to run")

    @lz.handler("wf_after")
    async def after(ctx: JobContext) -> str:
        return "done"

    flow = Workflow(
        "empty",
        [FanOut("items", "wf_item", items_from=INPUT), Step("end", "wf_after", after=("items",))],
    )
    started = await lz.start_workflow(flow, [])
    await lz.drain()
    workflow = await lz.workflow(started.workflow_id)
    assert workflow["state"] == "succeeded"
    assert workflow["results"]["end"] == "done"


async def test_a_dead_item_fails_the_workflow_until_it_is_requeued(lz: Lazarus) -> None:
    broken = {"file-2"}

    @lz.handler("wf_load")
    async def load(ctx: JobContext) -> str:
        if ctx.payload in broken:
            raise Permanent(f"cannot read {ctx.payload}")
        return ctx.payload.upper()

    @lz.handler("wf_report")
    async def report(ctx: JobContext) -> int:
        return len([v async for _, v in ctx.item_results("load")])

    flow = Workflow(
        "import",
        [FanOut("load", "wf_load", items_from=INPUT), Step("report", "wf_report", after=("load",))],
    )
    started = await lz.start_workflow(flow, ["file-1", "file-2", "file-3"])
    await lz.drain()
    workflow = await lz.workflow(started.workflow_id)
    assert workflow["state"] == "failed"
    assert "load[1]" in workflow["cause"] and "cannot read file-2" in workflow["cause"]
    assert workflow["steps"]["load[1]"] == "dead"
    assert workflow["steps"]["report"] == "waiting"

    broken.clear()
    dead = await lz.dead_letters()
    assert [d.job_id for d in dead] == [f"{started.workflow_id}/0/load[1]"]
    await lz.requeue(dead[0].job_id)
    await lz.drain()
    workflow = await lz.workflow(started.workflow_id)
    assert workflow["state"] == "succeeded", (workflow["steps"], workflow["steps_left"])
    assert workflow["results"]["report"] == 3


async def test_a_unique_name_is_held_while_the_workflow_runs(lz: Lazarus) -> None:
    @lz.handler("wf_once")
    async def once(ctx: JobContext) -> None:
        return None

    flow = Workflow("unique", [Step("only", "wf_once")])
    first = await lz.start_workflow(flow, unique_name="nightly")
    again = await lz.start_workflow(flow, unique_name="nightly", if_absent=True)
    assert (again.workflow_id, again.created) == (first.workflow_id, False)
    from engine.workflows import WorkflowExists

    with pytest.raises(WorkflowExists):
        await lz.start_workflow(flow, unique_name="nightly")
    await lz.drain()
    after = await lz.start_workflow(flow, unique_name="nightly")
    assert after.created and after.workflow_id != first.workflow_id
