"""A person's control over a workflow, on the in-memory store: retry its failed items in
one call, suspend and resume, cancel, restart from the beginning or from a step."""

from __future__ import annotations

from typing import Any

import pytest

from engine.context import JobContext
from engine.errors import Permanent, WorkflowNotFound, WorkflowStateConflict
from engine.message import StepRef
from engine.states import RequeueMode
from engine.testing import Lazarus
from engine.workflows import INPUT, FanOut, Step, Workflow, start_workflow
from engine.workflows.progress import NoSuchStep, complete

runs: list[str] = []
broken: set[str] = set()


def flow(lz: Lazarus) -> Workflow:
    runs.clear()
    broken.clear()

    @lz.handler("wfc_load")
    async def load(ctx: JobContext) -> Any:
        runs.append(f"load:{ctx.payload}")
        if ctx.payload in broken:
            raise Permanent(f"cannot load {ctx.payload}")
        return ctx.payload

    @lz.handler("wfc_merge")
    async def merge(ctx: JobContext) -> Any:
        runs.append("merge")
        return [v async for _, v in ctx.item_results("load")]

    @lz.handler("wfc_publish")
    async def publish(ctx: JobContext) -> Any:
        runs.append("publish")
        return len(await ctx.result_of("merge"))

    return Workflow(
        "wfc",
        [
            FanOut("load", "wfc_load", items_from=INPUT),
            Step("merge", "wfc_merge", after=("load",)),
            Step("publish", "wfc_publish", after=("merge",)),
        ],
    )


async def test_retry_moves_every_failed_item_in_one_call(lz: Lazarus) -> None:
    workflow = flow(lz)
    broken.update({"b", "d"})
    started = await lz.start_workflow(workflow, ["a", "b", "c", "d"])
    await lz.drain()
    assert (await lz.workflow(started.workflow_id))["state"] == "failed"
    broken.clear()
    moved = await lz.admin.workflows.retry([started.workflow_id], mode=RequeueMode.RECOVER)
    assert moved == 2
    await lz.drain()
    done = await lz.workflow(started.workflow_id)
    assert done["state"] == "succeeded"
    assert done["results"]["merge"] == ["a", "b", "c", "d"]
    assert runs.count("merge") == 1
    assert await lz.admin.workflows.retry([started.workflow_id]) == 0


async def test_suspend_holds_what_is_released_and_resume_goes_on(lz: Lazarus) -> None:
    workflow = flow(lz)
    started = await lz.start_workflow(workflow, ["a"])
    held = await lz.admin.workflows.suspend(started.workflow_id, "maintenance")
    assert held.state == "suspended" and held.cause == "Requested by user: maintenance"
    await lz.drain()
    assert runs == []  # the released item had not started: it was suspended with it
    shown = await lz.workflow(started.workflow_id)
    assert shown["steps"]["load[0]"] == "suspended"
    with pytest.raises(WorkflowStateConflict):
        await lz.admin.workflows.suspend(started.workflow_id)
    resumed = await lz.admin.workflows.resume(started.workflow_id)
    assert resumed.state == "running"
    await lz.drain()
    assert (await lz.workflow(started.workflow_id))["state"] == "succeeded"
    assert runs == ["load:a", "merge", "publish"]


async def test_cancel_stops_it_for_good(lz: Lazarus) -> None:
    workflow = flow(lz)
    started = await lz.start_workflow(workflow, ["a", "b"])
    cancelled = await lz.admin.workflows.cancel(started.workflow_id, "wrong input")
    assert cancelled.state == "cancelled"
    await lz.drain()
    assert runs == []
    with pytest.raises(WorkflowStateConflict):
        await lz.admin.workflows.retry([started.workflow_id])
    with pytest.raises(WorkflowStateConflict):
        await lz.admin.workflows.cancel(started.workflow_id)


async def test_restart_from_a_step_keeps_the_results_before_it(lz: Lazarus) -> None:
    workflow = flow(lz)
    started = await lz.start_workflow(workflow, ["a", "b"])
    await lz.drain()
    runs.clear()
    again = await lz.admin.workflows.restart(started.workflow_id, from_step="merge")
    assert again.generation == 1
    await lz.drain()
    shown = await lz.workflow(started.workflow_id)
    assert shown["state"] == "succeeded"
    assert runs == ["merge", "publish"]
    runs.clear()
    await lz.admin.workflows.restart(started.workflow_id)
    await lz.drain()
    assert sorted(runs) == ["load:a", "load:b", "merge", "publish"]
    assert (await lz.workflow(started.workflow_id))["generation"] == 2
    with pytest.raises(NoSuchStep):
        await lz.admin.workflows.restart(started.workflow_id, from_step="nope")


async def test_unknown_workflows_are_named(lz: Lazarus) -> None:
    with pytest.raises(WorkflowNotFound):
        await lz.admin.workflows.show("nope")
    with pytest.raises(WorkflowNotFound):
        await lz.admin.workflows.cancel("nope")


async def test_a_cancelled_workflow_stays_cancelled_when_its_last_step_finishes(
    lz: Lazarus,
) -> None:
    """A step that was running when the workflow was cancelled may still succeed: the
    workflow stays cancelled."""
    only = Workflow("wfc_one", [Step("only", "wfc_never")])
    started = await start_workflow(lz.store, None, only, None)  # staged, not published
    await lz.admin.workflows.cancel(started.workflow_id)
    async with lz.store.workflow_txn() as txn:
        done = await complete(txn, StepRef(started.workflow_id, 0, "only"), "late")
    assert done is not None and not done.finished
    assert (await lz.workflow(started.workflow_id))["state"] == "cancelled"
