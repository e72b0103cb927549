"""The crash points of a workflow step's success, each made to happen on PostgreSQL
(docs/workflows.md lists them beside the dead-letter ones)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from engine import JobContext, handler
from engine.amqp.broker import Broker
from engine.amqp.port import Outgoing
from engine.amqp.topology import work_queue
from engine.message import StepRef
from engine.outbox.relay import drain
from engine.outcome import Outcome
from engine.pg.store import Store
from engine.pg.workflows import PgWorkflowTxn
from engine.settings import Settings
from engine.worker.consume import Worker
from engine.workflows import INPUT, FanOut, Step, Workflow, start_workflow
from engine.workflows.progress import complete, restart
from tests.conftest import queue_depth, wait_for

pytestmark = pytest.mark.timeout(120)

PAIR = Workflow(
    "crash.pair",
    [FanOut("items", "crash.item", items_from=INPUT), Step("join", "crash.join", after=("items",))],
)
SPLIT = Workflow(
    "crash.split",
    [
        Step("list", "crash.list"),
        FanOut("items", "crash.item", items_from="list"),
        Step("join", "crash.join", after=("items",)),
    ],
)


async def outbox_jobs(store: Store) -> list[str]:
    return [r["job_id"] for r in await store.pool.fetch("SELECT job_id FROM outbox ORDER BY id")]


async def finish(store: Store, ref: StepRef, result: Any = None) -> bool:
    async with store.workflow_txn() as txn:
        return await complete(txn, ref, result) is not None


async def test_the_last_two_items_finishing_at_once_release_the_fan_in_once(
    dead_settings: Settings, store: Store
) -> None:
    for round_ in range(20):
        started = await start_workflow(store, None, PAIR, ["a", "b"], workflow_id=f"pair-{round_}")
        wid = started.workflow_id
        done = await asyncio.gather(
            finish(store, StepRef(wid, 0, "items", 0), 1),
            finish(store, StepRef(wid, 0, "items", 1), 2),
        )
        assert done == [True, True]
        released = [j for j in await outbox_jobs(store) if j.startswith(f"{wid}/")]
        assert released.count(f"{wid}/0/join") == 1, released


async def test_a_success_reported_twice_changes_nothing_the_second_time(
    dead_settings: Settings, store: Store
) -> None:
    started = await start_workflow(store, None, PAIR, ["a"])
    ref = StepRef(started.workflow_id, 0, "items", 0)
    assert await finish(store, ref, "first") is True
    before = await outbox_jobs(store)
    assert await finish(store, ref, "second") is False
    assert await outbox_jobs(store) == before
    done, result = await store.step_result(started.workflow_id, "items[0]")
    assert (done, result) == (True, "first")


async def test_a_crash_in_the_middle_of_a_fan_out_of_ten_thousand_leaves_nothing(
    dead_settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = await start_workflow(store, None, SPLIT, None)
    wid = started.workflow_id
    ref = StepRef(wid, 0, "list")
    items = list(range(10_000))
    real_launch = PgWorkflowTxn.launch

    async def dies(self: PgWorkflowTxn, workflow_id: str, launches: Any) -> None:
        await real_launch(self, workflow_id, launches[:5000])
        raise ConnectionResetError("the worker died half way through the fan-out")

    monkeypatch.setattr(PgWorkflowTxn, "launch", dies)
    with pytest.raises(ConnectionResetError):
        await finish(store, ref, items)
    assert [s for s in await store.workflow_steps(wid) if s["parent"] == "items"] == []
    assert await outbox_jobs(store) == [f"{wid}/0/list"]
    monkeypatch.setattr(PgWorkflowTxn, "launch", real_launch)
    assert await finish(store, ref, items) is True  # the redelivered step runs again
    released = await outbox_jobs(store)
    assert len(released) == 1 + 10_000 and len(set(released)) == len(released)
    assert (await store.workflow_progress(wid)) == {"succeeded": 1, "pending": 10_000, "waiting": 1}


async def test_a_run_of_an_old_generation_releases_nothing(
    dead_settings: Settings, store: Store
) -> None:
    started = await start_workflow(store, None, PAIR, ["a"])
    wid = started.workflow_id
    async with store.workflow_txn() as txn:
        row = await txn.lock(wid)
        assert row is not None
        await restart(txn, row, None)
    before = await outbox_jobs(store)
    assert await finish(store, StepRef(wid, 0, "items", 0), "late") is False
    assert await outbox_jobs(store) == before
    assert await finish(store, StepRef(wid, 1, "items", 0), "now") is True
    assert f"{wid}/1/join" in await outbox_jobs(store)


step_runs: dict[str, int] = {}


@handler("crash.count")
async def count(ctx: JobContext) -> Any:
    assert ctx.workflow is not None
    step_runs[ctx.job_id] = step_runs.get(ctx.job_id, 0) + 1
    return ctx.workflow.name


async def test_a_step_redelivered_after_its_successors_went_out_releases_them_once(
    dead_settings: Settings, store: Store
) -> None:
    """The worker loses the step after its success is committed and its successors are
    published, before its ack: the step runs again, its successors once."""
    chain = Workflow(
        "crash.chain", [Step("a", "crash.count"), Step("b", "crash.count", after=("a",))]
    )
    failed_once: set[str] = set()

    async def lose_the_ack_once(outcome: Outcome) -> Sequence[Outgoing]:
        if outcome.job_id.endswith("/a") and outcome.job_id not in failed_once:
            failed_once.add(outcome.job_id)
            raise ConnectionResetError("connection lost before the ack")
        return ()

    worker = Worker(dead_settings, ["default"], store=store, after=[lose_the_ack_once])
    await worker.start()
    try:
        started = await start_workflow(store, worker.broker, chain, None)

        async def succeeded() -> bool:
            row = await store.get_workflow(started.workflow_id)
            job = await store.get_job(f"{started.workflow_id}/0/a")
            done = row is not None and row["state"] == "succeeded"
            return done and job is not None and job["state"] == "succeeded"

        await wait_for(succeeded, what="the chain and its first step's job to succeed")
    finally:
        await worker.stop(grace=2)
    wid = started.workflow_id
    assert step_runs[f"{wid}/0/a"] == 2
    assert step_runs[f"{wid}/0/b"] == 1


async def test_successors_committed_but_not_published_go_out_with_the_relay(
    dead_settings: Settings, store: Store
) -> None:
    """The worker dies between the commit of a step's success and the publish of what it
    released: the outbox keeps them and the relay sends them."""
    started = await start_workflow(store, None, PAIR, ["a"])
    wid = started.workflow_id
    assert await finish(store, StepRef(wid, 0, "items", 0), 1) is True
    assert f"{wid}/0/join" in await outbox_jobs(store)
    async with Broker(dead_settings) as broker:
        await drain(store, broker)
        queue = work_queue(dead_settings.namespace, "default")
        assert await queue_depth(queue) == 2  # the item (never run here) and the join
    assert await outbox_jobs(store) == []
