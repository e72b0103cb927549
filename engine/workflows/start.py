"""Start a workflow: its graph in the store and its first steps released, in one
transaction; then their messages published (the relay does it if this process cannot).

A unique name is held while the workflow is not over for good (pending, running, failed,
suspended): a second start under it fails with :class:`WorkflowExists`, or, with
``if_absent``, answers with the workflow that holds it, as an enqueue under a unique key
does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from engine import metrics
from engine.amqp.port import BrokerPort
from engine.errors import LazarusError
from engine.message import MAX_INPUT_BYTES, json_problem, new_job_id, workflow_id_problem
from engine.outbox.relay import drain
from engine.pg.errors import DB_ERROR
from engine.pg.port import NewStep, NewWorkflow, OutboxStore, WorkflowStore
from engine.states import WorkflowState
from engine.workflows.definition import FanOut, Workflow, waits_on
from engine.workflows.progress import release

log = logging.getLogger("lazarus.workflows")

MAX_UNIQUE_NAME = 200


class WorkflowExists(LazarusError):
    """A workflow holds the unique name asked for."""

    def __init__(self, unique_name: str, holder: str, state: WorkflowState) -> None:
        super().__init__(
            f"workflow {holder!r} ({state.value}) holds the unique name {unique_name[:64]!r}"
        )
        self.holder = holder
        self.state = state


@dataclass(frozen=True, slots=True)
class Started:
    """What a start did: created the workflow, or found the one holding the name."""

    workflow_id: str
    created: bool
    state: WorkflowState


async def start_workflow(
    store: WorkflowStore,
    broker: BrokerPort | None,
    workflow: Workflow,
    input: Any = None,
    *,
    workflow_id: str | None = None,
    unique_name: str | None = None,
    if_absent: bool = False,
) -> Started:
    """Start ``workflow`` with ``input`` (JSON, passed to every step; a fan-out's items if
    it reads :data:`~engine.workflows.definition.INPUT`).

    Raises ValueError for an id, name or input that cannot be stored, WorkflowExists if
    ``unique_name`` is held and not ``if_absent``, WorkflowIdTaken if ``workflow_id`` is.
    ``broker`` None: the relay publishes the first steps.
    """
    workflow_id = workflow_id or new_job_id()
    problem = workflow_id_problem(workflow_id)
    if problem:
        raise ValueError(f"workflow id {workflow_id[:64]!r} {problem}")
    if unique_name is not None and not 0 < len(unique_name) <= MAX_UNIQUE_NAME:
        raise ValueError(f"a unique name has 1 to {MAX_UNIQUE_NAME} characters")
    if unique_name is not None and "\x00" in unique_name:
        raise ValueError("a unique name cannot hold a NUL character")
    problem = json_problem(input, MAX_INPUT_BYTES)
    if problem:
        raise ValueError(f"the workflow's input {problem}")
    new = NewWorkflow(workflow_id, workflow.name, unique_name, input, workflow.queue)
    steps = [
        NewStep(
            step.name,
            "fan_out" if isinstance(step, FanOut) else "step",
            step.job_type,
            workflow.queue_of(step),
            step.items_from if isinstance(step, FanOut) else None,
            len(waits_on(step)),
        )
        for step in workflow.steps.values()
    ]
    while True:
        async with store.workflow_txn() as txn:
            created = await txn.insert_workflow(new, steps, workflow.edges())
            if created:
                row = await txn.lock(workflow_id)
                assert row is not None
                launched = await release(txn, row)
        if created:
            log.info("workflow %s (%s) started: %d jobs", workflow_id, workflow.name, launched)
            metrics.labelled(metrics.WORKFLOWS_STARTED, workflow.name).inc()
            await _publish(store, broker, workflow_id)
            return Started(workflow_id, True, WorkflowState.PENDING)
        holder = await store.unique_holder(unique_name) if unique_name is not None else None
        if holder is not None:
            state = WorkflowState(holder["state"])
            if not if_absent:
                raise WorkflowExists(unique_name or "", holder["workflow_id"], state)
            return Started(holder["workflow_id"], False, state)
        # The holder let the name go between the refused insert and the look-up: again.


async def _publish(store: OutboxStore, broker: BrokerPort | None, workflow_id: str) -> None:
    if broker is None:
        return
    try:
        await drain(store, broker)
    except (LazarusError, *DB_ERROR) as exc:
        log.warning(
            "workflow %s: first steps staged; the relay will publish them: %r", workflow_id, exc
        )
