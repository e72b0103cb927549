"""The demo waits for a dead job's dead letter, not only for its row to say DEAD."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from engine.cli.demo import wait_until_finished
from engine.filters import DeadFilter
from engine.states import JobState


class RowBeforeLetter:
    """A job whose row says DEAD at once and whose dead letter is stored a moment later."""

    def __init__(self) -> None:
        self.listed = 0
        self.jobs = SimpleNamespace(show=self.show)

    async def show(self, job_id: str) -> Any:
        return SimpleNamespace(state=JobState.DEAD, attempt=2)

    async def list_dead(self, selector: DeadFilter) -> list[Any]:
        self.listed += 1
        return [SimpleNamespace(job_id="j1")] if self.listed > 1 else []


async def test_a_dead_job_counts_as_finished_once_its_dead_letter_is_stored() -> None:
    admin = RowBeforeLetter()
    jobs = await wait_until_finished(admin, [{"job_id": "j1"}], timeout=10)  # type: ignore[arg-type]
    assert admin.listed == 2
    assert jobs == [{"job_id": "j1", "state": JobState.DEAD, "attempt": 2}]
