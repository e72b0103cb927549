"""Workflows in the in-memory store: the rules of ``engine/pg/sql/workflows.sql`` and of
the trigger ``workflow_step_follows_job`` (migration 011).

A transaction holds one lock (the double serializes every workflow transaction, which
PostgreSQL does per workflow) and keeps an undo log: if the block raises, every change it
made to the tables is taken back, as a rollback would.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg

from engine.memory.tables import (
    JOB_COLUMNS,
    Tables,
    as_jsonb,
    checked_text,
    copied,
    pick,
    utc_now,
)
from engine.pg.port import Launch, NewStep, NewWorkflow, OutboxKind, Staged, WorkflowIdTaken
from engine.states import JobState, WorkflowState

_NAME_HELD = ("pending", "running", "failed", "suspended")
_NEEDS_PERSON = ("dead", "suspended", "cancelled")
Undo = Callable[[], None]


class MemoryWorkflowTxn:
    """One transaction of :class:`WorkflowTables`; see engine.pg.workflows.PgWorkflowTxn."""

    def __init__(self, tables: WorkflowTables) -> None:
        self.t = tables
        self.undo: list[Undo] = []

    def _set(self, table: dict[Any, Any], key: Any, row: Any) -> None:
        """Put ``row`` under ``key`` (None: remove it), remembering what was there."""
        before = table.get(key)
        saved = before if not isinstance(before, dict) else dict(before)

        def back() -> None:
            if saved is None:
                table.pop(key, None)
            else:
                table[key] = saved

        self.undo.append(back)
        if row is None:
            table.pop(key, None)
        else:
            table[key] = row

    def _update(self, table: dict[Any, Any], key: Any, **changes: Any) -> dict[str, Any]:
        row = dict(table[key]) | changes
        self._set(table, key, row)
        return row

    async def insert_workflow(
        self, workflow: NewWorkflow, steps: Sequence[NewStep], edges: Sequence[tuple[str, str]]
    ) -> bool:
        t = self.t
        t._up()
        if workflow.workflow_id in t.workflows:
            raise WorkflowIdTaken(f"workflow id {workflow.workflow_id[:64]!r} is taken")
        if workflow.unique_name is not None and t._holder(workflow.unique_name) is not None:
            return False
        now = utc_now()
        self._set(
            t.workflows,
            workflow.workflow_id,
            {
                "workflow_id": checked_text(workflow.workflow_id),
                "workflow_type": checked_text(workflow.workflow_type),
                "unique_name": checked_text(workflow.unique_name),
                "generation": 0,
                "state": WorkflowState.PENDING.value,
                "input": as_jsonb(workflow.input),
                "queue": workflow.queue,
                "steps_left": len(steps),
                "cause": None,
                "stopped_by": None,
                "created_at": now,
                "updated_at": now,
                "finished_at": None,
            },
        )
        for s in steps:
            self._set(
                t.step_rows,
                (workflow.workflow_id, s.step),
                _step_row(workflow.workflow_id, s.step, s.kind, s.job_type, s.queue)
                | {"items_from": s.items_from, "remaining": s.remaining},
            )
        for depends_on, step in edges:
            self._set(t.edge_rows, (workflow.workflow_id, depends_on, step), {})
        return True

    async def lock(self, workflow_id: str) -> dict[str, Any] | None:
        self.t._up()
        row = self.t.workflows.get(workflow_id)
        return None if row is None else copied(row)

    async def finish_step(
        self, workflow_id: str, step: str, job_id: str, result: Any
    ) -> dict[str, Any] | None:
        key = (workflow_id, step)
        row = self.t.step_rows.get(key)
        if row is None or row["job_id"] != job_id or row["state"] == "succeeded":
            return None
        done = self._update(
            self.t.step_rows,
            key,
            state="succeeded",
            result=as_jsonb(result),
            updated_at=utc_now(),
        )
        return copied(done)

    async def finish_fan_out(self, workflow_id: str, step: str) -> None:
        self._update(self.t.step_rows, (workflow_id, step), state="succeeded", updated_at=utc_now())

    async def fail_step(self, workflow_id: str, step: str, cause: str) -> None:
        self._update(self.t.step_rows, (workflow_id, step), state="dead", updated_at=utc_now())
        if self.t.workflows[workflow_id]["state"] in ("pending", "running", "failed"):
            self._update(
                self.t.workflows, workflow_id, state="failed", cause=cause, updated_at=utc_now()
            )

    async def count_down(self, workflow_id: str, steps: Sequence[str]) -> list[dict[str, Any]]:
        ready = []
        for step in steps:
            key = (workflow_id, step)
            if key not in self.t.step_rows:
                continue
            row = self.t.step_rows[key]
            row = self._update(self.t.step_rows, key, remaining=row["remaining"] - 1)
            if row["remaining"] == 0:
                ready.append(copied(row))
        return ready

    async def dependents(self, workflow_id: str, step: str) -> list[str]:
        return sorted(s for w, d, s in self.t.edge_rows if w == workflow_id and d == step)

    async def ready(self, workflow_id: str) -> list[dict[str, Any]]:
        return [
            copied(r)
            for (w, _), r in sorted(self.t.step_rows.items())
            if w == workflow_id
            and r["parent"] is None
            and r["state"] == "waiting"
            and r["remaining"] == 0
        ]

    async def result(self, workflow_id: str, step: str) -> Any:
        row = self.t.step_rows.get((workflow_id, step))
        return None if row is None else copied({"r": row["result"]})["r"]

    async def add_items(
        self, workflow_id: str, fan_out: Any, generation: int, items: Sequence[Any]
    ) -> None:
        name = fan_out["step"]
        for index, item in enumerate(items):
            step = f"{name}[{index}]"
            self._set(
                self.t.step_rows,
                (workflow_id, step),
                _step_row(workflow_id, step, "item", fan_out["job_type"], fan_out["queue"])
                | {
                    "parent": name,
                    "item": index,
                    "generation": generation,
                    "payload": as_jsonb(item),
                },
            )
        self._update(
            self.t.step_rows,
            (workflow_id, name),
            state="running",
            remaining=len(items),
            generation=generation,
            updated_at=utc_now(),
        )

    async def launch(self, workflow_id: str, launches: Sequence[Launch]) -> None:
        now = utc_now()
        for x in launches:
            self._update(
                self.t.step_rows,
                (workflow_id, x.step),
                state="pending",
                job_id=x.job_id,
                updated_at=now,
            )
            self._set(self.t.step_of_job, x.job_id, (workflow_id, x.step))
            if x.job_id not in self.t.jobs:
                self._set(
                    self.t.jobs,
                    x.job_id,
                    dict.fromkeys(JOB_COLUMNS)
                    | {
                        "job_id": checked_text(x.job_id),
                        "generation": 0,
                        "seq": 0,
                        "redeliveries": 0,
                        "job_type": x.job_type,
                        "queue": x.queue,
                        "state": JobState.PENDING.value,
                        "attempt": 0,
                        "payload": as_jsonb(x.payload),
                        "created_at": now,
                        "updated_at": now,
                        "workflow_id": workflow_id,
                    },
                )
            outbox_id = self.t._stage(Staged(OutboxKind.STEP, x.job_id, x.queue, x.body))
            self.undo.append(functools.partial(self._forget_outbox_row, outbox_id))

    def _forget_outbox_row(self, outbox_id: int) -> None:
        self.t.outbox.pop(outbox_id, None)

    async def top_level_done(self, workflow_id: str) -> int:
        row = self.t.workflows[workflow_id]
        row = self._update(self.t.workflows, workflow_id, steps_left=row["steps_left"] - 1)
        return int(row["steps_left"])

    async def set_state(
        self,
        workflow_id: str,
        state: WorkflowState,
        cause: str | None = None,
        actor: str | None = None,
    ) -> None:
        name = self.t.workflows[workflow_id]["unique_name"]
        holder = None if name is None else self.t._holder(name)
        if state.value in _NAME_HELD and holder not in (None, self.t.workflows[workflow_id]):
            raise asyncpg.UniqueViolationError(
                'duplicate key value violates unique constraint "workflows_unique_name_held"'
            )
        over = state in (WorkflowState.SUCCEEDED, WorkflowState.CANCELLED)
        finished = utc_now() if over else None
        self._update(
            self.t.workflows,
            workflow_id,
            state=state.value,
            cause=cause,
            stopped_by=actor,
            updated_at=utc_now(),
            finished_at=finished,
        )

    async def top_steps(self, workflow_id: str) -> list[dict[str, Any]]:
        return [
            copied(r)
            for (w, _), r in sorted(self.t.step_rows.items())
            if w == workflow_id and r["parent"] is None
        ]

    async def edges(self, workflow_id: str) -> list[tuple[str, str]]:
        return sorted((d, s) for w, d, s in self.t.edge_rows if w == workflow_id)

    async def step_jobs(self, workflow_id: str, states: Sequence[str]) -> list[dict[str, Any]]:
        found = []
        for (w, step), row in sorted(self.t.step_rows.items()):
            job = self.t.jobs.get(row["job_id"] or "")
            if w == workflow_id and row["state"] in states and job is not None:
                found.append(
                    {
                        "step": step,
                        "job_id": job["job_id"],
                        "generation": job["generation"],
                        "state": job["state"],
                        "cause": job["cause"],
                        "error_type": job["error_type"],
                        "error_message": job["error_message"],
                    }
                )
        return found

    async def reset(self, workflow_id: str, steps: Sequence[str], generation: int) -> None:
        names = set(steps)
        for key, row in list(self.t.step_rows.items()):
            if key[0] == workflow_id and row["parent"] in names:
                self._set(self.t.step_rows, key, None)
        for name in names:
            self._update(
                self.t.step_rows,
                (workflow_id, name),
                state="waiting",
                job_id=None,
                result=None,
                generation=generation,
                updated_at=utc_now(),
            )
        rows = {s: r for (w, s), r in self.t.step_rows.items() if w == workflow_id}
        for name in names:
            waits = [d for w, d, s in self.t.edge_rows if w == workflow_id and s == name]
            left = sum(rows[d]["state"] != "succeeded" for d in waits)
            self._update(self.t.step_rows, (workflow_id, name), remaining=left)
        steps_left = sum(r["parent"] is None and r["state"] != "succeeded" for r in rows.values())
        self._update(
            self.t.workflows,
            workflow_id,
            generation=generation,
            steps_left=steps_left,
            updated_at=utc_now(),
        )


def _step_row(workflow_id: str, step: str, kind: str, job_type: str, queue: str) -> dict[str, Any]:
    return {
        "workflow_id": workflow_id,
        "step": checked_text(step),
        "kind": kind,
        "parent": None,
        "item": None,
        "job_type": job_type,
        "queue": queue,
        "items_from": None,
        "generation": 0,
        "state": "waiting",
        "remaining": 0,
        "job_id": None,
        "payload": None,
        "result": None,
        "updated_at": utc_now(),
    }


class WorkflowTables(Tables):
    """``workflows``, ``workflow_steps`` and ``workflow_edges``, and the step-follows-job
    rule that PostgreSQL keeps in a trigger."""

    def __init__(self) -> None:
        super().__init__()
        self.workflows: dict[str, dict[str, Any]] = {}
        self.step_rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.edge_rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.step_of_job: dict[str, tuple[str, str]] = {}  # the index workflow_steps_job
        self._workflow_lock = asyncio.Lock()

    @asynccontextmanager
    async def workflow_txn(self) -> AsyncIterator[MemoryWorkflowTxn]:
        async with self._workflow_lock:
            self._up()
            txn = MemoryWorkflowTxn(self)
            try:
                yield txn
            except BaseException:
                for back in reversed(txn.undo):
                    back()
                raise

    async def step_result(self, workflow_id: str, step: str) -> tuple[bool, Any]:
        self._up()
        row = self.step_rows.get((workflow_id, step))
        if row is None:
            return False, None
        return row["state"] == "succeeded", copied({"r": row["result"]})["r"]

    async def item_results(
        self, workflow_id: str, fan_out: str, after: int, limit: int
    ) -> list[tuple[int, Any]]:
        self._up()
        rows = sorted(
            (r["item"], copied({"r": r["result"]})["r"])
            for (w, _), r in self.step_rows.items()
            if w == workflow_id
            and r["parent"] == fan_out
            and r["item"] > after
            and r["state"] == "succeeded"
        )
        return rows[:limit]

    async def unique_holder(self, unique_name: str) -> dict[str, Any] | None:
        self._up()
        holder = self._holder(unique_name)
        return (
            None
            if holder is None
            else {"workflow_id": holder["workflow_id"], "state": holder["state"]}
        )

    async def get_workflow(self, workflow_id: str) -> dict[str, Any] | None:
        self._up()
        row = self.workflows.get(workflow_id)
        return None if row is None else copied(row)

    async def workflow_steps(
        self,
        workflow_id: str,
        *,
        after: str = "",
        limit: int = 1000,
        top_level: bool = False,
        states: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        self._up()
        rows = sorted(
            (
                r
                for (w, s), r in self.step_rows.items()
                if w == workflow_id
                and s > after
                and (not top_level or r["parent"] is None)
                and (states is None or r["state"] in states)
            ),
            key=lambda r: r["step"],
        )
        return [{k: v for k, v in copied(r).items() if k != "payload"} for r in rows[:limit]]

    async def workflow_progress(self, workflow_id: str) -> dict[str, int]:
        return (await self.progress_of([workflow_id])).get(workflow_id, {})

    async def fan_out_progress(self, workflow_id: str) -> dict[str, dict[str, int]]:
        self._up()
        counts: dict[str, dict[str, int]] = {}
        for (w, _), r in self.step_rows.items():
            if w == workflow_id and r["parent"] is not None:
                per_state = counts.setdefault(r["parent"], {})
                per_state[r["state"]] = per_state.get(r["state"], 0) + 1
        return counts

    async def progress_of(self, workflow_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        self._up()
        wanted = set(workflow_ids)
        counts: dict[str, dict[str, int]] = {}
        for (w, _), r in self.step_rows.items():
            if w in wanted and r["kind"] != "fan_out":
                per_state = counts.setdefault(w, {})
                per_state[r["state"]] = per_state.get(r["state"], 0) + 1
        return counts

    async def list_workflows(
        self,
        *,
        state: str | None = None,
        workflow_type: str | None = None,
        limit: int = 50,
        before: tuple[datetime, str] | None = None,
    ) -> list[dict[str, Any]]:
        self._up()
        rows = sorted(
            (
                r
                for r in self.workflows.values()
                if (state is None or r["state"] == state)
                and (workflow_type is None or r["workflow_type"] == workflow_type)
                and (before is None or (r["created_at"], r["workflow_id"]) < before)
            ),
            key=lambda r: (r["created_at"], r["workflow_id"]),
            reverse=True,
        )
        listed = ("workflow_id", "workflow_type", "unique_name", "generation", "state", "cause",
                  "stopped_by", "created_at", "updated_at", "finished_at")  # fmt: skip
        return [pick(r, listed) for r in rows[:limit]]

    def _holder(self, unique_name: str) -> dict[str, Any] | None:
        for row in self.workflows.values():
            if row["unique_name"] == unique_name and row["state"] in _NAME_HELD:
                return row
        return None

    def _dead_letter_stored(self, row: dict[str, Any]) -> None:
        """The trigger ``workflow_step_died``: a step's dead letter makes it dead and its
        workflow failed, even when no job state says so (an unknown type, say)."""
        if row.get("workflow_id") is None:
            return
        step = self._step_run_by(row["job_id"])
        if step is None or step["state"] in ("succeeded", "cancelled", "dead"):
            return
        step.update(state="dead", updated_at=utc_now())
        self._fail(step, "dead", f"{row['error_type']}: {row['error_message']}")

    def _step_run_by(self, job_id: str) -> dict[str, Any] | None:
        """The step whose current job is ``job_id`` (the index workflow_steps_job)."""
        key = self.step_of_job.get(job_id)
        step = None if key is None else self.step_rows.get(key)
        return step if step is not None and step["job_id"] == job_id else None

    def _fail(self, step: dict[str, Any], state: str, error: str) -> None:
        """The workflow of a step that needs a person is FAILED, saying which and why,
        unless a person's suspend or cancel, or its success, holds it."""
        workflow = self.workflows[step["workflow_id"]]
        if workflow["state"] in ("pending", "running", "failed"):
            cause = f"step {step['step']} {state}: {error}"[:2000]
            workflow.update(state="failed", cause=cause, updated_at=utc_now())

    def _job_state_changed(self, job: dict[str, Any], was: str | None) -> None:
        """The trigger ``workflow_step_follows_job``: a step follows its job's state but for
        success; a step that needs a person fails its workflow, and once none does, the
        workflow runs again."""
        state = job["state"]
        if job.get("workflow_id") is None or state == JobState.SUCCEEDED or was == state:
            return
        step = self._step_run_by(job["job_id"])
        if step is None or step["state"] in ("succeeded", "waiting", state):
            return
        previous = step["state"]
        step.update(state=state, updated_at=utc_now())
        workflow = self.workflows[step["workflow_id"]]
        if state in _NEEDS_PERSON:
            error = job["cause"] or (
                f"{job['error_type']}: {job['error_message']}"
                if job["error_type"] and job["error_message"] is not None
                else job["error_type"] or "no error recorded"
            )
            self._fail(step, state, error)
        elif previous in _NEEDS_PERSON:
            if workflow["state"] == "failed" and not any(
                r["state"] in _NEEDS_PERSON
                for (w, _), r in self.step_rows.items()
                if w == step["workflow_id"]
            ):
                workflow.update(state="running", cause=None, updated_at=utc_now())
        elif state == JobState.RUNNING and workflow["state"] == "pending":
            workflow.update(state="running", updated_at=utc_now())
