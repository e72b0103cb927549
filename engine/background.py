"""A background task owned by the object that starts it: one per name, stopped by
cancelling it and waiting until it has ended.

Five parts of a worker run such a loop (the tracker, the dead-letter writer, the recorder,
the control loop and the dead-letter service's loops); each used to hold its own
``asyncio.Task`` and repeat the cancel-and-wait at stop. A stop that forgets to wait leaves
a task writing after its store is closed; one that does not swallow the cancellation
raises it into the caller's shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class Background:
    """One named task: :meth:`start` it once, :meth:`stop` it any number of times."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._task: asyncio.Task[None] | None = None

    def start(
        self,
        work: Coroutine[Any, Any, None],
        *,
        when_done: Callable[[asyncio.Task[None]], object] | None = None,
    ) -> None:
        """Run ``work`` in a task named after this; RuntimeError if one already runs.
        ``when_done`` is called with the task when it ends (also when it crashes)."""
        if self._task is not None:
            work.close()
            raise RuntimeError(f"{self.name} is already running")
        self._task = asyncio.create_task(work, name=self.name)
        if when_done is not None:
            self._task.add_done_callback(when_done)

    @property
    def started(self) -> bool:
        """Started and not stopped (the task may have ended on its own)."""
        return self._task is not None

    @property
    def done(self) -> bool:
        """The task ended on its own (or was never started)."""
        return self._task is None or self._task.done()

    async def stop(self) -> None:
        """Cancel the task and wait until it has ended; its exception, if any, is dropped
        (``when_done`` saw it)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
