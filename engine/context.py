"""What a handler receives: the job, its identity, and a way to save progress."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.errors import JobStopped, LazarusError
from engine.message import JobMessage

CheckpointSaver = Callable[[JobMessage, Any], Awaitable[bool]]


class JobContext:
    """The running job. ``key`` (job id and generation) is the idempotency key for side effects."""

    __slots__ = ("_latest", "_saver", "message", "stopped", "try_number", "worker_id")

    def __init__(
        self,
        message: JobMessage,
        worker_id: str,
        try_number: int = 1,
        saver: CheckpointSaver | None = None,
    ) -> None:
        self.message = message
        self.worker_id = worker_id
        self.try_number = try_number  # in-process try within this broker-level run
        self._saver = saver
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
