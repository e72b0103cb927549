"""The rules of a workflow's progress, on one :class:`~engine.pg.port.WorkflowTxn`.

- A step's success is one transaction: the workflow's row is locked, the step is marked
  SUCCEEDED with its result by a compare-and-set on the job that ran it (a duplicate
  delivery, a stale generation's copy or a second run after a crash finds it done and
  changes nothing), each step waiting on it counts one dependency down, and those at 0
  are released: their jobs made pending and their messages put in the outbox. The
  outbox row is written once per release, because the count reaches 0 once.
- A work item's success counts its fan-out down; the fan-out succeeds with its last item.
- A fan-out released expands into its items: the JSON array its source gave.
- Nothing is released while the workflow is suspended, cancelled or over: released steps
  wait with nothing left to wait on, and :func:`release` launches them on resume.
- The workflow succeeds with the success of its last top-level step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.message import MAX_ITEMS, JobMessage, StepRef, encode
from engine.pg.port import Launch, WorkflowTxn
from engine.pg.rows import Row
from engine.states import HOLDS, WorkflowState

log = logging.getLogger("lazarus.workflows")


@dataclass(frozen=True, slots=True)
class Completed:
    """What a step's success did: released ``released`` jobs; ``finished`` the workflow."""

    workflow_type: str
    released: int
    finished: bool


async def complete(txn: WorkflowTxn, ref: StepRef, result: Any) -> Completed | None:
    """Record the success of the step ``ref`` names and release what waited on it; None
    if it changed nothing (already done, or a stale generation's run)."""
    workflow = await txn.lock(ref.workflow_id)
    if workflow is None:
        return None
    row = await txn.finish_step(ref.workflow_id, ref.name, ref.job_id, result)
    if row is None:
        return None
    finished = [row["step"]]
    if row["parent"] is not None:
        finished = [r["step"] for r in await txn.count_down(ref.workflow_id, [row["parent"]])]
        for fan_out in finished:
            await txn.finish_fan_out(ref.workflow_id, fan_out)
    released, over = await _advance(txn, workflow, finished)
    return Completed(workflow["workflow_type"], released, over)


async def release(txn: WorkflowTxn, workflow: Row) -> int:
    """Launch the top-level steps that wait on nothing (a new workflow's first steps, or
    those held while it was suspended); return how many jobs were launched."""
    if WorkflowState(workflow["state"]) in HOLDS:
        return 0
    return await _launch_ready(txn, workflow, await txn.ready(workflow["workflow_id"]))


async def _advance(txn: WorkflowTxn, workflow: Row, finished: list[str]) -> tuple[int, bool]:
    """Top-level steps ``finished`` succeeded: count down what waits on them, launch what
    is ready, and end the workflow with its last step. Returns (jobs launched, whether
    the workflow succeeded)."""
    workflow_id = workflow["workflow_id"]
    held = WorkflowState(workflow["state"]) in HOLDS
    launched, over = 0, False
    for name in finished:
        if await txn.top_level_done(workflow_id) == 0 and not _cancelled(workflow):
            await txn.set_state(workflow_id, WorkflowState.SUCCEEDED)
            log.info("workflow %s succeeded", workflow_id)
            over = True
        ready = await txn.count_down(workflow_id, await txn.dependents(workflow_id, name))
        if not held:
            launched += await _launch_ready(txn, workflow, ready)
    return launched, over


def _cancelled(workflow: Row) -> bool:
    """A cancelled workflow stays cancelled, even if the steps still running succeed."""
    return bool(workflow["state"] == WorkflowState.CANCELLED)


async def _launch_ready(txn: WorkflowTxn, workflow: Row, ready: Sequence[Row]) -> int:
    """Launch ready steps; expand ready fan-outs into their items (one with no items
    succeeds at once, and what waits on it moves on)."""
    workflow_id = workflow["workflow_id"]
    launches: list[Launch] = []
    empty: list[str] = []
    for row in ready:
        if row["kind"] != "fan_out":
            launches.append(_launch(workflow, row, workflow["input"]))
            continue
        items = await _items(txn, workflow, row)
        if items is None:
            continue
        if not items:
            await txn.finish_fan_out(workflow_id, row["step"])
            empty.append(row["step"])
            continue
        await txn.add_items(workflow_id, row, workflow["generation"], items)
        launches.extend(_launch(workflow, row, item, index=i) for i, item in enumerate(items))
    await txn.launch(workflow_id, launches)
    launched = len(launches)
    if empty:
        launched += (await _advance(txn, workflow, empty))[0]
    return launched


async def _items(txn: WorkflowTxn, workflow: Row, fan_out: Row) -> list[Any] | None:
    """A fan-out's items; None (and the fan-out failed, saying why) if its source is not
    a JSON array of at most MAX_ITEMS."""
    source = fan_out["items_from"]
    if source == "$input":
        items, where = workflow["input"], "the workflow's input"
    else:
        items, where = (
            await txn.result(workflow["workflow_id"], source),
            f"the result of {source!r}",
        )
    problem = None
    if not isinstance(items, list):
        problem = f"{where} is not a JSON array of items: {type(items).__name__}"
    elif len(items) > MAX_ITEMS:
        problem = f"{where} has {len(items)} items, more than the {MAX_ITEMS} of a fan-out"
    if problem is None:
        return list(items)
    await txn.fail_step(workflow["workflow_id"], fan_out["step"], problem)
    log.warning(
        "workflow %s: fan-out %s failed: %s", workflow["workflow_id"], fan_out["step"], problem
    )
    return None


def _launch(workflow: Row, row: Row, payload: Any, *, index: int | None = None) -> Launch:
    """The pending job and message of a step (or of item ``index`` of a fan-out)."""
    ref = StepRef(workflow["workflow_id"], workflow["generation"], row["step"], index)
    message = JobMessage(
        type=row["job_type"],
        payload=payload,
        id=ref.job_id,
        queue=row["queue"],
        workflow=ref,
    )
    return Launch(ref.name, ref.job_id, row["job_type"], row["queue"], payload, encode(message))


class NoSuchStep(ValueError):
    """A restart named a step the workflow does not have."""


async def restart(txn: WorkflowTxn, workflow: Row, from_step: str | None) -> list[str]:
    """Start a new generation of a locked workflow: every step, or ``from_step`` and all
    that waits on it (directly or not), waits again without result; the steps that stay
    keep theirs. The ready steps are released. Returns the steps reset.

    A run of the old generation that is still going finishes on a step that is not its
    own any more (the compare-and-set is on its job), so it releases nothing.
    """
    workflow_id = workflow["workflow_id"]
    names = [r["step"] for r in await txn.top_steps(workflow_id)]
    if from_step is None:
        reset = names
    elif from_step not in names:
        raise NoSuchStep(f"workflow {workflow_id!r} has no step {from_step!r}")
    else:
        reset = _downstream(from_step, await txn.edges(workflow_id))
    generation = workflow["generation"] + 1
    await txn.reset(workflow_id, reset, generation)
    await txn.set_state(workflow_id, WorkflowState.RUNNING)
    renewed = await txn.lock(workflow_id)
    assert renewed is not None
    await release(txn, renewed)
    return reset


def _downstream(step: str, edges: Sequence[tuple[str, str]]) -> list[str]:
    """``step`` and every step that waits on it, directly or not, in name order."""
    found = {step}
    frontier = [step]
    while frontier:
        current = frontier.pop()
        for depends_on, waiting in edges:
            if depends_on == current and waiting not in found:
                found.add(waiting)
                frontier.append(waiting)
    return sorted(found)
