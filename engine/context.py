"""What a handler receives: the job, its identity, and a way to save progress."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from engine.errors import JobStopped, LazarusError
from engine.message import JobMessage, StepRef

CheckpointSaver = Callable[[JobMessage, Any], Awaitable[bool]]

RESULTS_PAGE = 500  # items' results read per query by JobContext.item_results


class StepResults(Protocol):
    """Where a workflow step reads the results of the steps it waited on."""

    async def step_result(self, workflow_id: str, step: str) -> tuple[bool, Any]: ...

    async def item_results(
        self, workflow_id: str, fan_out: str, after: int, limit: int
    ) -> list[tuple[int, Any]]: ...


class JobContext:
    """The running job. ``key`` (job id and generation) is the idempotency key for side effects."""

    __slots__ = (
        "_latest",
        "_results",
        "_saver",
        "message",
        "stopped",
        "try_number",
        "worker_id",
    )

    def __init__(
        self,
        message: JobMessage,
        worker_id: str,
        try_number: int = 1,
        saver: CheckpointSaver | None = None,
        results: StepResults | None = None,
    ) -> None:
        self.message = message
        self.worker_id = worker_id
        self.try_number = try_number  # in-process try within this broker-level run
        self._saver = saver
        self._results = results
        self._latest: Any = message.checkpoint
        self.stopped = False  # a checkpoint was refused: the run is over, whatever follows

    @property
    def payload(self) -> Any:
        return self.message.payload

    @property
    def job_id(self) -> str:
        return self.message.id

    @property
    def attempt(self) -> int:
        return self.message.attempt

    @property
    def key(self) -> str:
        return self.message.key

    @property
    def workflow(self) -> StepRef | None:
        """The workflow step this job runs (None for a job of its own)."""
        return self.message.workflow

    async def result_of(self, step: str) -> Any:
        """The result of ``step``, a step of this job's workflow that succeeded (one this
        step waited on). LazarusError if this job is no workflow step or ``step`` has not
        succeeded."""
        ref, results = self._step_results()
        done, value = await results.step_result(ref.workflow_id, step)
        if not done:
            raise LazarusError(f"workflow {ref.workflow_id}: step {step!r} has not succeeded")
        return value

    async def item_results(self, fan_out: str) -> AsyncIterator[tuple[int, Any]]:
        """(index, result) of every item of the fan-out ``fan_out``, in index order, read a
        page at a time: a fan-in step reads thousands of results without holding them."""
        ref, results = self._step_results()
        after = -1
        while True:
            page = await results.item_results(ref.workflow_id, fan_out, after, RESULTS_PAGE)
            for index, value in page:
                yield index, value
            if len(page) < RESULTS_PAGE:
                return
            after = page[-1][0]

    def _step_results(self) -> tuple[StepRef, StepResults]:
        ref = self.message.workflow
        if ref is None:
            raise LazarusError(
                f"job {self.job_id} is not a workflow step: it has no results to read"
            )
        if self._results is None:
            raise LazarusError(f"job {self.job_id}: results need a worker with a database")
        return ref, self._results

    @property
    def checkpoint_state(self) -> Any:
        """The progress saved last (by this run or an earlier one kept by ``recover``);
        None on a fresh start."""
        return self._latest

    async def checkpoint(self, state: Any) -> None:
        """Save progress (JSON); durable in PostgreSQL before this returns.

        Raises LazarusError if the job type is not tracked, JobStopped (a LazarusError) if
        a person stopped the job: however the handler ends after that, the run counts as
        stopped.
        """
        if self._saver is None:
            raise LazarusError(
                f"job {self.job_id} ({self.message.type}): checkpoints need state tracking "
                "(a worker with a database and a handler with track=True)"
            )
        if not await self._saver(self.message, state):
            self.stopped = True
            raise JobStopped(f"job {self.job_id}: not running any more; checkpoint refused")
        self._latest = state
