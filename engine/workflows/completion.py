"""A workflow step's success, as the worker's after-outcome hook.

The worker calls it before it acks a step that succeeded: the transaction of
:func:`engine.workflows.progress.complete` commits, then the released steps are published
from the outbox. A failed transaction fails the hook, so the step is not acked and runs
again (its success is written once: the compare-and-set on its job). A failed publish
after the commit does not: the released steps are in the outbox, and the relay sends them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from engine import metrics
from engine.amqp.port import BrokerPort, Outgoing
from engine.errors import LazarusError
from engine.outbox.relay import drain
from engine.outcome import Outcome
from engine.pg.errors import DB_CONFLICT, DB_ERROR
from engine.pg.port import OutboxStore, StepStore
from engine.states import Verdict
from engine.workflows.progress import complete

log = logging.getLogger("lazarus.workflows")

# A transaction that lost a deadlock is run again this many times before the hook fails.
CONFLICT_TRIES = 5


class StepCompletion:
    """After a step's success: record it and release what waited on it, then publish."""

    def __init__(self, store: StepStore, outbox: OutboxStore, broker: BrokerPort) -> None:
        self.store = store
        self.outbox = outbox
        self.broker = broker

    async def __call__(self, outcome: Outcome) -> Sequence[Outgoing]:
        message = outcome.message
        if outcome.verdict is not Verdict.SUCCEEDED or message is None:
            return ()
        if message.workflow is None:
            return ()
        for attempt in range(1, CONFLICT_TRIES + 1):
            try:
                async with self.store.workflow_txn() as txn:
                    done = await complete(txn, message.workflow, outcome.result)
                break
            except DB_CONFLICT:
                if attempt == CONFLICT_TRIES:
                    raise
                log.info("step %s: its transaction lost a race; running it again", message.id)
        if done is None:
            return ()
        metrics.labelled(metrics.WORKFLOW_STEPS_SUCCEEDED, done.workflow_type).inc()
        if done.released:
            metrics.labelled(metrics.WORKFLOW_STEPS_RELEASED, done.workflow_type).inc(done.released)
            await self._publish(message.id)
        if done.finished:
            metrics.labelled(metrics.WORKFLOWS_SUCCEEDED, done.workflow_type).inc()
        return ()

    async def _publish(self, job_id: str) -> None:
        try:
            await drain(self.outbox, self.broker)
        except (LazarusError, *DB_ERROR) as exc:
            log.warning(
                "step %s: released steps are staged; the relay will publish them: %r", job_id, exc
            )
