"""What a handler receives: the job and its identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.message import JobMessage


@dataclass(frozen=True, slots=True)
class JobContext:
    """The running job. ``key`` (job id and generation) is the idempotency key for side effects."""

    message: JobMessage
    worker_id: str
    try_number: int = 1  # in-process attempt within this broker-level run

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
        """Progress saved by an earlier run when resumed in recover mode; None on a fresh start."""
        return self.message.checkpoint
