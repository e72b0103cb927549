"""A workflow step's success, as the worker's after-outcome hook.

The worker calls it before it acks a step that succeeded. The successes that arrive
while one transaction is under way are written together by the next one: each goes
through :func:`engine.workflows.progress.complete`, workflows in id order (so two workers'
transactions lock them in the same order), then one commit, then the released steps are
published from the outbox, then every caller goes on to its ack. A batch whose
transaction fails is written again one success at a time, so a success that cannot be
written fails its own step only: that step is not acked and runs again (its success is
written once: the compare-and-set on its job). A failed publish after the commit fails
nothing: the released steps are in the outbox, and the relay sends them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import metrics
from engine.amqp.port import BrokerPort, Outgoing
from engine.errors import LazarusError
from engine.message import StepRef
from engine.outbox.relay import drain
from engine.outcome import Outcome
from engine.pg.errors import DB_CONFLICT, DB_ERROR
from engine.pg.port import OutboxStore, StepStore
from engine.states import Verdict
from engine.workflows.progress import Completed, complete

log = logging.getLogger("lazarus.workflows")

# A transaction that lost a deadlock is run again this many times before it fails.
CONFLICT_TRIES = 5
BATCH = 500  # successes written by one transaction at most


@dataclass
class _Success:
    ref: StepRef
    result: Any
    done: asyncio.Future[Completed | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class StepCompletion:
    """After a step's success: record it and release what waited on it, then publish."""

    def __init__(self, store: StepStore, outbox: OutboxStore, broker: BrokerPort) -> None:
        self.store = store
        self.outbox = outbox
        self.broker = broker
        self._waiting: list[_Success] = []
        self._writer: asyncio.Task[None] | None = None

    async def __call__(self, outcome: Outcome) -> Sequence[Outgoing]:
        message = outcome.message
        if outcome.verdict is not Verdict.SUCCEEDED or message is None:
            return ()
        if message.workflow is None:
            return ()
        success = _Success(message.workflow, outcome.result)
        self._waiting.append(success)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="lazarus-step-successes")
        done = await success.done
        if done is not None:
            metrics.labelled(metrics.WORKFLOW_STEPS_SUCCEEDED, done.workflow_type).inc()
            if done.released:
                released = metrics.labelled(metrics.WORKFLOW_STEPS_RELEASED, done.workflow_type)
                released.inc(done.released)
            if done.finished:
                metrics.labelled(metrics.WORKFLOWS_SUCCEEDED, done.workflow_type).inc()
        return ()

    async def _write(self) -> None:
        """Write what waits, a batch per transaction, until nothing does."""
        while self._waiting:
            await asyncio.sleep(0)  # the successes of this tick join the batch
            batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
            try:
                results = await self._together(batch)
            except Exception as exc:  # each is then written on its own
                if len(batch) == 1:
                    batch[0].done.set_exception(exc)
                    continue
                log.info("%d step successes failed together (%r); one at a time", len(batch), exc)
                results = []
                for success in batch:
                    try:
                        results.extend(await self._together([success]))
                    except Exception as single:  # fails its own step
                        success.done.set_exception(single)
                        results.append(None)
            if any(r is not None and r.released for r in results):
                await self._publish()
            for success, result in zip(batch, results, strict=True):
                if not success.done.done():
                    success.done.set_result(result)

    async def _together(self, batch: list[_Success]) -> list[Completed | None]:
        """One transaction for the batch (run again if it lost a deadlock)."""
        ordered = sorted(range(len(batch)), key=lambda i: batch[i].ref.workflow_id)
        for attempt in range(1, CONFLICT_TRIES + 1):
            try:
                results: dict[int, Completed | None] = {}
                async with self.store.workflow_txn() as txn:
                    for i in ordered:
                        results[i] = await complete(txn, batch[i].ref, batch[i].result)
                return [results[i] for i in range(len(batch))]
            except DB_CONFLICT:
                if attempt == CONFLICT_TRIES:
                    raise
                log.info("a transaction of step successes lost a race; running it again")
        raise AssertionError("unreachable")

    async def _publish(self) -> None:
        try:
            await drain(self.outbox, self.broker)
        except (LazarusError, *DB_ERROR) as exc:
            log.warning("released steps wait for the relay: %r", exc)
