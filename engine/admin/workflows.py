"""People's control over workflows: start, list, show, retry failed items, suspend,
resume, cancel, restart.

Each change locks the workflow's row in the transaction of the change
(engine.workflows.progress), so it never interleaves with a step's completion: after a
suspend or cancel commits, no completion releases another step. Stopping the step jobs
that were already released goes through the jobs' own compare-and-set
(:class:`~engine.admin.lifecycle.Lifecycle`), as a person's stop of a single job does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.admin.lifecycle import person_cause, stage_resume
from engine.admin.rows import WorkflowDetail, WorkflowStep, WorkflowSummary
from engine.errors import WorkflowNotFound, WorkflowStateConflict
from engine.filters import DeadFilter
from engine.outbox.relay import drain
from engine.pg.errors import DB_DUPLICATE
from engine.states import JobState, RequeueMode, WorkflowState
from engine.workflows.definition import lookup_workflow
from engine.workflows.progress import release, restart
from engine.workflows.start import Started, start_workflow

if TYPE_CHECKING:
    from engine.admin.facade import Admin

log = logging.getLogger("lazarus.workflows")

NEEDS_PERSON = (JobState.DEAD.value, JobState.SUSPENDED.value, JobState.CANCELLED.value)
RELEASED = (JobState.PENDING.value, JobState.RUNNING.value, JobState.RETRYING.value)
SUSPENDED_WITH = "Workflow suspended"  # the cause prefix of the step jobs a suspend stops
MAX_IDS = 1000  # workflows named in one call


class Workflows:
    """Workflow control over an open :class:`Admin` (its store, broker and actor)."""

    def __init__(self, admin: Admin[Any]) -> None:
        self.admin = admin
        self.store = admin.store

    async def start(
        self,
        workflow_type: str,
        input: Any = None,
        *,
        workflow_id: str | None = None,
        unique_name: str | None = None,
        if_absent: bool = False,
    ) -> Started:
        """Start a registered workflow (UnknownWorkflowType if this process has none by
        that name); see :func:`engine.workflows.start_workflow`."""
        started = await start_workflow(
            self.store,
            self.admin.broker,
            lookup_workflow(workflow_type),
            input,
            workflow_id=workflow_id,
            unique_name=unique_name,
            if_absent=if_absent,
        )
        if started.created:
            what = {"workflow_id": started.workflow_id, "type": workflow_type}
            await self.store.audit(self.admin.actor, "start workflow", what, 1)
        return started

    async def list(
        self,
        *,
        state: WorkflowState | None = None,
        workflow_type: str | None = None,
        limit: int = 50,
        before: tuple[datetime, str] | None = None,
    ) -> list[WorkflowSummary]:
        """Newest first, with their progress; ``before``: the (created_at, workflow_id) of
        the last one seen, for the next page."""
        rows = await self.store.list_workflows(
            state=None if state is None else state.value,
            workflow_type=workflow_type,
            limit=limit,
            before=before,
        )
        progress = await self.store.progress_of([r["workflow_id"] for r in rows])
        return [WorkflowSummary.from_row(r, progress.get(r["workflow_id"], {})) for r in rows]

    async def show(self, workflow_id: str, *, limit: int = 100) -> WorkflowDetail:
        """The workflow, its top-level steps, and up to ``limit`` steps and items that need
        a person."""
        row = await self._found(workflow_id)
        progress = await self.store.workflow_progress(workflow_id)
        steps = await self.store.workflow_steps(workflow_id, top_level=True, limit=limit)
        failed = await self.store.workflow_steps(workflow_id, states=NEEDS_PERSON, limit=limit)
        async with self.store.workflow_txn() as txn:
            jobs = {j["step"]: j for j in await txn.step_jobs(workflow_id, NEEDS_PERSON)}
        return WorkflowDetail(
            summary=WorkflowSummary.from_row(row, progress),
            input=row["input"],
            steps=[WorkflowStep.from_row(s) for s in steps],
            needs_person=[WorkflowStep.from_row(s) for s in failed],
            causes={name: _why(job) for name, job in jobs.items()},
            fan_outs=await self.store.fan_out_progress(workflow_id),
        )

    async def retry(
        self,
        workflow_ids: Sequence[str],
        *,
        mode: RequeueMode = RequeueMode.RESTART,
        retries: int | None = None,
    ) -> int:
        """Move back every failed work item and step of these workflows (this generation's):
        dead ones are requeued, suspended ones resumed, in ``mode``. Returns how many moved.
        A cancelled workflow has nothing to retry (WorkflowStateConflict)."""
        if not workflow_ids or len(workflow_ids) > MAX_IDS:
            raise ValueError(f"name 1 to {MAX_IDS} workflows")
        dead: list[str] = []
        suspended: list[tuple[str, int]] = []
        for workflow_id in dict.fromkeys(workflow_ids):
            row = await self._found(workflow_id)
            if row["state"] == WorkflowState.CANCELLED:
                raise WorkflowStateConflict(f"workflow {workflow_id!r} is cancelled")
            async with self.store.workflow_txn() as txn:
                jobs = await txn.step_jobs(workflow_id, (JobState.DEAD, JobState.SUSPENDED))
            dead += [j["job_id"] for j in jobs if j["state"] == JobState.DEAD]
            suspended += [
                (j["job_id"], j["generation"]) for j in jobs if j["state"] == JobState.SUSPENDED
            ]
        moved = 0
        if dead:
            moved += await self.admin.requeue(
                DeadFilter(ids=tuple(dead)), retries=retries, mode=mode
            )
        for job_id, generation in suspended:
            moved += await self._resume_job(job_id, generation, mode, retries)
        await self.store.audit(
            self.admin.actor,
            "retry workflow items",
            {"workflow_ids": list(workflow_ids)[:20], "mode": mode.value, "retries": retries},
            moved,
        )
        return moved

    async def suspend(self, workflow_id: str, reason: str | None = None) -> WorkflowSummary:
        """Hold the workflow: no step is released while it is suspended, and the released
        steps that have not started are suspended too (running ones finish). A workflow
        that is over cannot be suspended (WorkflowStateConflict)."""
        cause = person_cause(reason)
        async with self.store.workflow_txn() as txn:
            row = await self._locked(txn, workflow_id)
            if row["state"] not in ("pending", "running", "failed"):
                raise _conflict(workflow_id, "pending, running or failed", row)
            await txn.set_state(workflow_id, WorkflowState.SUSPENDED, cause, self.admin.actor)
            waiting = await txn.step_jobs(workflow_id, (JobState.PENDING,))
        await self._stop_jobs(
            waiting, JobState.SUSPENDED, f"{SUSPENDED_WITH}: {cause}", (JobState.PENDING,)
        )
        await self.store.audit(
            self.admin.actor, "suspend workflow", {"workflow_id": workflow_id}, 1
        )
        return await self._summary(workflow_id)

    async def resume(self, workflow_id: str) -> WorkflowSummary:
        """Go on from where a suspend held it: the steps it suspended are resumed (from
        their checkpoints), the steps that became ready meanwhile released."""
        async with self.store.workflow_txn() as txn:
            row = await self._locked(txn, workflow_id)
            if row["state"] != WorkflowState.SUSPENDED:
                raise _conflict(workflow_id, "suspended", row)
            held = await txn.step_jobs(workflow_id, (JobState.SUSPENDED,))
            failing = await txn.step_jobs(workflow_id, NEEDS_PERSON)
            ours = [j for j in held if str(j["cause"] or "").startswith(SUSPENDED_WITH)]
            left = len(failing) - len(ours)
            state = WorkflowState.FAILED if left else WorkflowState.RUNNING
            cause = f"{left} steps need a person" if left else None
            await txn.set_state(workflow_id, state, cause)
            renewed = await txn.lock(workflow_id)
            assert renewed is not None
            await release(txn, renewed)
        await drain(self.store, self.admin.broker)
        for job in ours:
            await self._resume_job(job["job_id"], job["generation"], RequeueMode.RECOVER, None)
        await self.store.audit(self.admin.actor, "resume workflow", {"workflow_id": workflow_id}, 1)
        return await self._summary(workflow_id)

    async def cancel(self, workflow_id: str, reason: str | None = None) -> WorkflowSummary:
        """Stop the workflow for good: nothing more is released, and its released steps
        are cancelled (running ones at their next await, as a cancelled job is)."""
        cause = person_cause(reason)
        async with self.store.workflow_txn() as txn:
            row = await self._locked(txn, workflow_id)
            if row["state"] in (WorkflowState.SUCCEEDED, WorkflowState.CANCELLED):
                raise _conflict(workflow_id, "not over", row)
            await txn.set_state(workflow_id, WorkflowState.CANCELLED, cause, self.admin.actor)
            going = await txn.step_jobs(workflow_id, (*RELEASED, JobState.SUSPENDED.value))
        await self._stop_jobs(going, JobState.CANCELLED, f"Workflow cancelled: {cause}")
        await self.store.audit(self.admin.actor, "cancel workflow", {"workflow_id": workflow_id}, 1)
        return await self._summary(workflow_id)

    async def restart(self, workflow_id: str, *, from_step: str | None = None) -> WorkflowSummary:
        """Run the workflow again as a new generation: from the beginning, or from
        ``from_step`` (it and what waits on it run again; the rest keep their results).
        Runs of the reset steps that are still going are cancelled."""
        async with self.store.workflow_txn() as txn:
            row = await self._locked(txn, workflow_id)
            before = await txn.step_jobs(workflow_id, (*RELEASED, JobState.SUSPENDED.value))
            try:
                reset = set(await restart(txn, row, from_step))
            except DB_DUPLICATE:
                raise WorkflowStateConflict(
                    f"workflow {workflow_id!r}: another workflow holds its unique name"
                ) from None
        await drain(self.store, self.admin.broker)
        old_runs = [j for j in before if j["step"].partition("[")[0] in reset]
        await self._stop_jobs(old_runs, JobState.CANCELLED, "Workflow restarted")
        what = {"workflow_id": workflow_id, "from_step": from_step}
        await self.store.audit(self.admin.actor, "restart workflow", what, 1)
        return await self._summary(workflow_id)

    async def _stop_jobs(
        self,
        jobs: Sequence[Any],
        state: JobState,
        cause: str,
        found_in: Sequence[str] = (*RELEASED, JobState.SUSPENDED.value),
    ) -> None:
        """Stop step jobs as a person's stop of a job does (a compare-and-set on the
        generation and states found); one that moved on meanwhile is left as it is."""
        for job in jobs:
            await self.store.stop_job(
                job["job_id"],
                state.value,
                cause,
                self.admin.actor,
                list(found_in),
                job["generation"],
            )

    async def _resume_job(
        self, job_id: str, generation: int, mode: RequeueMode, retries: int | None
    ) -> int:
        row = await stage_resume(self.store, job_id, generation, mode, retries, self.admin.actor)
        if row is None:
            return 0
        await drain(self.store, self.admin.broker)
        return 1

    async def _found(self, workflow_id: str) -> Any:
        row = await self.store.get_workflow(workflow_id)
        if row is None:
            raise WorkflowNotFound(f"no workflow {workflow_id!r}")
        return row

    async def _locked(self, txn: Any, workflow_id: str) -> Any:
        row = await txn.lock(workflow_id)
        if row is None:
            raise WorkflowNotFound(f"no workflow {workflow_id!r}")
        return row

    async def _summary(self, workflow_id: str) -> WorkflowSummary:
        row = await self._found(workflow_id)
        return WorkflowSummary.from_row(row, await self.store.workflow_progress(workflow_id))


def _why(job: Any) -> str:
    """Why a step's job stopped: the person's cause, else its last error."""
    if job["cause"]:
        return str(job["cause"])
    if job["error_type"]:
        return f"{job['error_type']}: {job['error_message'] or ''}"
    return "no error recorded"


def _conflict(workflow_id: str, expected: str, row: Any) -> WorkflowStateConflict:
    return WorkflowStateConflict(
        f"workflow {workflow_id!r} is not {expected} (it is {row['state']})"
    )
