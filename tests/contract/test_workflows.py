"""The workflow half of the store port, held to the same rules on PostgreSQL and in
memory: the transaction's primitives (engine.pg.port.WorkflowTxn), the reads, and the
step-follows-job rule (a trigger in PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.pg.errors import DB_DUPLICATE
from engine.pg.port import Launch, NewStep, NewWorkflow, WorkflowIdTaken
from engine.states import JobState, WorkflowState
from tests.contract.conftest import AnyStore
from tests.contract.test_store import death, report

STEPS = [
    NewStep("a", "step", "t.a", "default", None, 0),
    NewStep("fan", "fan_out", "t.item", "default", "a", 1),
    NewStep("z", "step", "t.z", "default", None, 1),
]
EDGES = [("a", "fan"), ("fan", "z")]


def new(workflow_id: str = "w1", unique_name: str | None = None, input: Any = None) -> NewWorkflow:
    return NewWorkflow(workflow_id, "flow", unique_name, input, "default")


def launch(step: str, job_id: str, payload: Any = None) -> Launch:
    return Launch(step, job_id, "t.a", "default", payload, f"body:{job_id}".encode())


async def outbox(store: AnyStore) -> list[tuple[str, str]]:
    async with store.claim_outbox(100_000) as rows:
        return [(r["kind"], r["job_id"]) for r in rows]


async def started(store: AnyStore, workflow_id: str = "w1", **kw: Any) -> None:
    async with store.workflow_txn() as txn:
        assert await txn.insert_workflow(new(workflow_id, **kw), STEPS, EDGES)
        await txn.launch(workflow_id, [launch("a", f"{workflow_id}/0/a")])


async def test_insert_lock_and_the_unique_name(store: AnyStore) -> None:
    await started(store, unique_name="nightly", input={"k": [1]})
    async with store.workflow_txn() as txn:
        row = await txn.lock("w1")
        assert row is not None
        assert (row["state"], row["generation"], row["steps_left"]) == ("pending", 0, 3)
        assert row["input"] == {"k": [1]}
        assert await txn.lock("nope") is None
        assert not await txn.insert_workflow(new("w2", "nightly"), STEPS, EDGES)
        with pytest.raises(WorkflowIdTaken):
            await txn.insert_workflow(new("w1"), STEPS, EDGES)
    holder = await store.unique_holder("nightly")
    assert holder is not None and (holder["workflow_id"], holder["state"]) == ("w1", "pending")
    async with store.workflow_txn() as txn:
        await txn.set_state("w1", WorkflowState.SUCCEEDED)
    assert await store.unique_holder("nightly") is None
    await started(store, "w2", unique_name="nightly")
    with pytest.raises(DB_DUPLICATE):
        async with store.workflow_txn() as txn:
            await txn.set_state("w1", WorkflowState.RUNNING)


async def test_a_transaction_that_raises_leaves_nothing(store: AnyStore) -> None:
    with pytest.raises(RuntimeError):
        async with store.workflow_txn() as txn:
            await txn.insert_workflow(new(), STEPS, EDGES)
            await txn.launch("w1", [launch("a", "w1/0/a")])
            raise RuntimeError("crash")
    assert await store.get_workflow("w1") is None
    assert await store.get_job("w1/0/a") is None
    assert await outbox(store) == []


async def test_launch_finish_count_down_and_release(store: AnyStore) -> None:
    await started(store)
    job = await store.get_job("w1/0/a")
    assert job is not None and (job["state"], job["workflow_id"]) == ("pending", "w1")
    assert await outbox(store) == [("step", "w1/0/a")]
    async with store.workflow_txn() as txn:
        assert await txn.finish_step("w1", "a", "w1/0/other", 1) is None  # not its job
        done = await txn.finish_step("w1", "a", "w1/0/a", [3, 4])
        assert done is not None and (done["kind"], done["parent"]) == ("step", None)
        assert await txn.finish_step("w1", "a", "w1/0/a", 9) is None  # once
        assert await txn.dependents("w1", "a") == ["fan"]
        ready = await txn.count_down("w1", ["fan"])
        assert [(r["step"], r["kind"], r["items_from"]) for r in ready] == [("fan", "fan_out", "a")]
        assert await txn.result("w1", "a") == [3, 4]
        assert [r["step"] for r in await txn.ready("w1")] == ["fan"]
        assert await txn.top_level_done("w1") == 2
        fan = ready[0]
        await txn.add_items("w1", fan, 0, [[1, 2], {"x": None}])
        await txn.launch("w1", [launch("fan[0]", "w1/0/fan[0]", [1, 2])])
        assert await txn.ready("w1") == []
        assert await txn.count_down("w1", ["fan"]) == []  # 2 items -> 1 left
        assert [r["step"] for r in await txn.count_down("w1", ["fan"])] == ["fan"]
        await txn.finish_fan_out("w1", "fan")
        assert await txn.edges("w1") == [("a", "fan"), ("fan", "z")]
        assert [r["step"] for r in await txn.top_steps("w1")] == ["a", "fan", "z"]
    assert await store.step_result("w1", "a") == (True, [3, 4])
    assert await store.step_result("w1", "z") == (False, None)
    assert await store.step_result("w1", "nope") == (False, None)
    steps = {s["step"]: s for s in await store.workflow_steps("w1")}
    assert steps["fan[1]"]["kind"] == "item" and steps["fan[1]"]["item"] == 1
    assert steps["fan"]["state"] == "succeeded" and steps["fan[0]"]["state"] == "pending"
    item = await store.get_job("w1/0/fan[0]")
    assert item is not None and item["payload"] == [1, 2]
    top = await store.workflow_steps("w1", top_level=True)
    assert [s["step"] for s in top] == ["a", "fan", "z"]
    pending = await store.workflow_steps("w1", states=["pending"])
    assert [s["step"] for s in pending] == ["fan[0]"]
    page = await store.workflow_steps("w1", after="fan", limit=1)
    assert [s["step"] for s in page] == ["fan[0]"]
    assert await store.workflow_progress("w1") == {"succeeded": 1, "pending": 1, "waiting": 2}
    assert await store.fan_out_progress("w1") == {"fan": {"pending": 1, "waiting": 1}}


async def test_item_results_page_in_index_order(store: AnyStore) -> None:
    await started(store)
    async with store.workflow_txn() as txn:
        fan = (await txn.top_steps("w1"))[1]
        await txn.add_items("w1", fan, 0, list(range(5)))
        jobs = [launch(f"fan[{i}]", f"w1/0/fan[{i}]") for i in range(5)]
        await txn.launch("w1", jobs)
        for i in (4, 0, 2, 1):
            await txn.finish_step("w1", f"fan[{i}]", f"w1/0/fan[{i}]", i * 10)
    assert await store.item_results("w1", "fan", -1, 2) == [(0, 0), (1, 10)]
    assert await store.item_results("w1", "fan", 1, 10) == [(2, 20), (4, 40)]


async def test_fail_step_fails_the_workflow_with_its_cause(store: AnyStore) -> None:
    await started(store)
    async with store.workflow_txn() as txn:
        await txn.fail_step("w1", "fan", "the result of 'a' is not a JSON array")
    row = await store.get_workflow("w1")
    assert row is not None
    assert (row["state"], row["cause"]) == ("failed", "the result of 'a' is not a JSON array")


async def test_a_step_follows_its_job_and_fails_its_workflow(store: AnyStore) -> None:
    await started(store)
    error = ("ValueError", "bad header", "Traceback ...")
    await store.report([report("w1/0/a", seq=1, state=JobState.RUNNING)])
    assert (await store.get_workflow("w1") or {})["state"] == "running"
    await store.report([report("w1/0/a", seq=3, state=JobState.DEAD, error=error)])
    row = await store.get_workflow("w1")
    assert row is not None and row["state"] == "failed"
    assert row["cause"] == "step a dead: ValueError: bad header"
    assert [s["state"] for s in await store.workflow_steps("w1", after="", limit=1)] == ["dead"]
    assert [j["job_id"] for j in await _step_jobs(store, ["dead"])] == ["w1/0/a"]
    await store.report([report("w1/0/a", generation=1, seq=1, state=JobState.RUNNING)])
    row = await store.get_workflow("w1")
    assert row is not None and (row["state"], row["cause"]) == ("running", None)
    stopped = await store.stop_job(
        "w1/0/a", "cancelled", "Requested by user", "ops", ["running"], 1
    )
    assert stopped is not None
    assert (await store.get_workflow("w1") or {})["state"] == "failed"
    await store.report([report("w1/0/a", generation=2, seq=4, state=JobState.SUCCEEDED)])
    step = (await store.workflow_steps("w1", limit=1))[0]
    assert step["state"] == "cancelled"  # success is the completion's to write, not a report's


async def _step_jobs(store: AnyStore, states: list[str]) -> list[Any]:
    async with store.workflow_txn() as txn:
        return list(await txn.step_jobs("w1", states))


async def test_reset_counts_the_waits_again(store: AnyStore) -> None:
    await started(store)
    async with store.workflow_txn() as txn:
        await txn.finish_step("w1", "a", "w1/0/a", [1])
        await txn.top_level_done("w1")
        fan = (await txn.count_down("w1", ["fan"]))[0]
        await txn.add_items("w1", fan, 0, ["x"])
        await txn.reset("w1", ["fan", "z"], 1)
        row = await txn.lock("w1")
        assert row is not None and (row["generation"], row["steps_left"]) == (1, 2)
        steps = {s["step"]: s for s in await txn.top_steps("w1")}
        assert (steps["fan"]["state"], steps["fan"]["remaining"]) == ("waiting", 0)
        assert (steps["z"]["state"], steps["z"]["remaining"]) == ("waiting", 1)
        assert steps["a"]["state"] == "succeeded"
        await txn.reset("w1", ["a", "fan", "z"], 2)
        steps = {s["step"]: s for s in await txn.top_steps("w1")}
        assert [steps[n]["remaining"] for n in ("a", "fan", "z")] == [0, 1, 1]
    assert [s["step"] for s in await store.workflow_steps("w1")] == ["a", "fan", "z"]


async def test_listing_pages_newest_first_with_progress(store: AnyStore) -> None:
    for n in range(3):
        await started(store, f"w{n}")
    async with store.workflow_txn() as txn:
        await txn.set_state("w1", WorkflowState.CANCELLED, "Requested by user", "ops")
    rows = await store.list_workflows(limit=2)
    assert [r["workflow_id"] for r in rows] == ["w2", "w1"]
    last = rows[-1]
    more = await store.list_workflows(before=(last["created_at"], last["workflow_id"]))
    assert [r["workflow_id"] for r in more] == ["w0"]
    cancelled = await store.list_workflows(state="cancelled")
    assert [(r["workflow_id"], r["stopped_by"]) for r in cancelled] == [("w1", "ops")]
    assert cancelled[0]["finished_at"] is not None
    assert await store.list_workflows(workflow_type="other") == []
    progress = await store.progress_of(["w0", "w1", "nope"])
    assert progress == {"w0": {"pending": 1, "waiting": 1}, "w1": {"pending": 1, "waiting": 1}}
    shown = await store.get_workflow("w0")
    assert shown is not None and shown["workflow_type"] == "flow"
    assert await store.get_workflow("nope") is None
    assert datetime.now(UTC) - shown["created_at"] < timedelta(minutes=5)


async def test_a_steps_dead_letter_fails_its_workflow_without_a_job_state(
    store: AnyStore,
) -> None:
    """A step whose job no worker knew dies without a job state: its dead letter (which
    names the workflow) makes it dead, and the workflow FAILED."""
    await started(store)
    record = replace(death("w1/0/a", error_type="UnknownJobType", error_message="no handler"),
                     workflow_id="w1")  # fmt: skip
    await store.insert_dead([replace(death("other"), workflow_id=None), record])
    row = await store.get_workflow("w1")
    assert row is not None and row["state"] == "failed"
    assert row["cause"] == "step a dead: UnknownJobType: no handler"
    assert [s["state"] for s in await store.workflow_steps("w1", limit=1)] == ["dead"]
    await store.report([report("w1/0/a", generation=1, seq=1, state=JobState.RUNNING)])
    row = await store.get_workflow("w1")
    assert row is not None and row["state"] == "running"
