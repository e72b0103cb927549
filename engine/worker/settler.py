"""Acting on a job's outcome: publish its successor (confirmed), then ack.

Rules kept here:
- an original is acked only after its successor (retry copy, dead letter) is confirmed
  by the broker; a failed publish means no ack, and the delivery goes back after
  ``NACK_BACKOFF`` seconds;
- with a store, a death is stored before its copy is published (engine.deadletters.writer);
- a tracked job's DEAD or SUSPENDED verdict is written before anything is published,
  and a worker-side failure never overwrites a person's suspension;
- a tracked success is acked from the write of its SUCCEEDED row;
- what an outcome leads to (the ``after`` hooks: chained jobs, callbacks, next steps) is
  published and confirmed before the ack, like a retry copy or a dead letter: a failed
  publish (or a failing hook) means no ack, and the job runs again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from engine import metrics
from engine.amqp.acks import AckBatcher
from engine.amqp.consumer import Delivery
from engine.amqp.port import BrokerPort, Outgoing
from engine.amqp.topology import delay_tier_ms
from engine.deadletters.protocol import dead_headers, publish_dead
from engine.deadletters.records import dead_record
from engine.deadletters.writer import DeadLetterWriter
from engine.errors import PublishFailed, ServiceUnavailable
from engine.message import H_TRACEBACK, JobMessage, encode
from engine.outcome import DeadReason, Outcome
from engine.pg.port import WorkerStore
from engine.pg.rows import Row
from engine.registry import Handler
from engine.states import JobState, Verdict
from engine.worker.tracker import Tracker, Transition

log = logging.getLogger("lazarus.worker")

# After a failed publish, wait this long before handing the message back, so a broker
# that refuses publishes does not turn into a hot redelivery loop.
NACK_BACKOFF = 1.0

# Row states that end a generation: a decisive report refused against one stands.
_ENDED = frozenset(
    s.value for s in (JobState.SUCCEEDED, JobState.DEAD, JobState.SUSPENDED, JobState.CANCELLED)
)


class AfterOutcome(Protocol):
    """Messages a job's final outcome (SUCCEEDED or DEAD) leads to: the settler publishes
    them, confirmed, before it acks the job. Where chaining and callbacks plug in."""

    def __call__(self, outcome: Outcome) -> Awaitable[Sequence[Outgoing]]: ...


class Settler:
    """Settles the deliveries of one worker: acks (batched), nacks and successors."""

    def __init__(
        self,
        broker: BrokerPort,
        worker_id: str,
        queue_of: Callable[[Delivery], str],
        *,
        store: WorkerStore | None = None,
        tracker: Tracker | None = None,
        dead_writer: DeadLetterWriter | None = None,
        after: Sequence[AfterOutcome] = (),
    ) -> None:
        self.broker = broker
        self.after = tuple(after)
        self.worker_id = worker_id
        self.queue_of = queue_of
        self.store = store
        self.tracker = tracker
        self.dead_writer = dead_writer
        self.acks = AckBatcher()
        self.processed = 0

    def ack(self, delivery: Delivery) -> None:
        """Ack once this tick ends, batched with its neighbours (see engine.amqp.acks)."""
        self.acks.ack(delivery)

    async def nack(self, delivery: Delivery, backoff: float = 0.0) -> None:
        """Hand a delivery back to the broker (after ``backoff`` seconds)."""
        if backoff:
            await asyncio.sleep(backoff)
        try:
            await delivery.nack(requeue=True)
        except Exception as exc:
            log.warning("nack failed (%r); the message will be redelivered", exc)
        self.acks.settled(delivery)

    async def nack_later(self, delivery: Delivery) -> None:
        """Hand a delivery back after ``NACK_BACKOFF``: its successor could not be made."""
        await self.nack(delivery, backoff=NACK_BACKOFF)

    async def settle(self, delivery: Delivery, outcome: Outcome, *, ran: bool = False) -> None:
        """Carry out an outcome: publish its successor (confirmed), then ack.

        ``ran``: the outcome is a handler's, counted in ``processed``."""
        if ran:
            self.processed += 1
        try:
            if outcome.verdict is Verdict.RETRY:
                await self._publish_retry(outcome)
            elif outcome.verdict is Verdict.DEAD:
                await self._publish_death(delivery, outcome)
            await self._publish_successors(outcome)
        except PublishFailed as exc:
            log.error(
                "job %s: successor not confirmed, leaving it to redelivery: %s", outcome.job_id, exc
            )
            await self.nack_later(delivery)
            return
        self.ack(delivery)
        self._count_settled(delivery, outcome)

    async def republish_stored_death(
        self, delivery: Delivery, message: JobMessage, row: Row
    ) -> None:
        """Publish a stored death's dead letter again from its row, then ack; the copy
        may have been lost when a worker died between the row's commit and the confirm."""
        headers = dict(row["headers"] or {}) | {H_TRACEBACK: row["traceback"]}
        try:
            await publish_dead(self.broker, bytes(row["body"]), message.id, headers, stored=True)
        except PublishFailed as exc:
            log.warning(
                "job %s: dead letter not confirmed, leaving it to redelivery: %s", message.id, exc
            )
            await self.nack_later(delivery)
            return
        log.info(
            "job %s generation %d died before: dead letter published again",
            message.id,
            message.generation,
        )
        self.ack(delivery)

    async def _publish_successors(self, outcome: Outcome) -> None:
        """Publish what the ``after`` hooks say a final outcome leads to, confirmed;
        PublishFailed if a publish or a hook failed."""
        if not self.after or outcome.verdict is Verdict.RETRY:
            return
        outgoing: list[Outgoing] = []
        for hook in self.after:
            try:
                outgoing.extend(await hook(outcome))
            except Exception as exc:
                raise PublishFailed(f"an after-outcome hook failed: {exc!r}") from exc
        if outgoing:
            await self.broker.publish_many(outgoing)

    async def _publish_retry(self, outcome: Outcome) -> None:
        assert outcome.message is not None
        retry = replace(outcome.message.next_attempt(), checkpoint=outcome.checkpoint)
        exchange, key = await self.broker.delay_route(retry.queue, delay_tier_ms(outcome.delay))
        await self.broker.publish(exchange, key, encode(retry), None, retry.id)
        log.info(
            "job %s (%s) failed attempt %d, retrying in %.1f s: %s",
            retry.id,
            retry.type,
            retry.attempt,
            outcome.delay,
            outcome.error.message if outcome.error else "",
        )

    async def _publish_death(self, delivery: Delivery, outcome: Outcome) -> None:
        message = outcome.message
        headers = dead_headers(
            reason=outcome.reason or DeadReason.EXHAUSTED,
            error=outcome.error,
            worker_id=self.worker_id,
            queue=message.queue if message else self.queue_of(delivery),
            message=message,
        )
        stored = await self.store_death(delivery.body, outcome, headers)
        await publish_dead(self.broker, delivery.body, outcome.job_id, headers, stored=stored)
        log.warning(
            "job %s dead (%s): %s",
            outcome.job_id,
            outcome.reason,
            outcome.error.message if outcome.error else "",
        )

    async def store_death(self, body: bytes, outcome: Outcome, headers: dict[str, Any]) -> bool:
        """Store the death's row; False if there is no store or it failed (the recorder will)."""
        if self.dead_writer is None:
            return False
        record = dead_record(body, outcome.job_id, headers, outcome.message)
        try:
            await self.dead_writer.write(record)
        except ServiceUnavailable:
            return False
        return True

    async def track(self, delivery: Delivery, handler: Handler, outcome: Outcome) -> bool:
        """Report a tracked job's outcome; True if the delivery was settled here.

        A DEAD or SUSPENDED verdict is written before anything is published: if a person
        stopped the job meanwhile, their state stands and the job is only acked.
        """
        assert self.tracker is not None and outcome.message is not None
        message, error = outcome.message, outcome.error
        if outcome.verdict is Verdict.SUCCEEDED:
            try:
                await self._publish_successors(outcome)
            except PublishFailed as exc:
                log.error("job %s: successors not confirmed, running it again: %s", message.id, exc)
                await self.nack_later(delivery)
                return True
            # Acked once the row is written: a worker that dies in between leaves a copy
            # that finds its job SUCCEEDED, never a RUNNING row for a job that is done.
            self.tracker.report_then(
                Transition(message, JobState.SUCCEEDED, self.worker_id),
                lambda: self._succeeded(delivery, outcome),
            )
            return True
        if outcome.verdict is Verdict.RETRY:
            return await self._decide_retry(delivery, outcome)
        suspend = handler.suspends(message)
        state = JobState.SUSPENDED if suspend else JobState.DEAD
        cause = f"{error.type}: {error.message}" if error else None
        decision = Transition(message, state, self.worker_id, error=error, cause=cause)
        try:
            applied = await self.tracker.decide(decision)
        except ServiceUnavailable as exc:
            if suspend:  # the row is the only copy of a suspended job: keep the message
                log.warning("job %s: cannot record its suspension (%s); retrying", message.id, exc)
                await self.nack_later(delivery)
                return True
            # The dead letter does not need the row (the recorder keeps it); the row says
            # DEAD once PostgreSQL answers.
            self.tracker.report(decision)
            return False
        if not applied and not await self.refusal_stands(message, dying=True):
            # Refused, yet no person holds the job and no other copy is known to have
            # finished it: the write's fate is unknown, or another copy decided DEAD and
            # may have died before its row. A death is stored as a dead letter anyway; a
            # suspension is tried again.
            if suspend:
                await self.nack_later(delivery)
                return True
            return False
        if not applied:
            log.info(
                "job %s failed after a person stopped it or another copy ended it; its row stands",
                message.id,
            )
        if suspend or not applied:
            outcome_label = "suspended" if applied else "stopped"
            metrics.labelled(
                metrics.JOBS_FINISHED, message.queue, message.type, outcome_label
            ).inc()
            self.ack(delivery)
            self.processed += 1
            return True
        return False

    async def _decide_retry(self, delivery: Delivery, outcome: Outcome) -> bool:
        """Write RETRYING before the retry is published; True if settled here.

        A failure that arrives after a person stopped the job (their state holds the row)
        is no retry: the job is acked and counted as stopped, and no copy is published.
        """
        assert self.tracker is not None and outcome.message is not None
        message = outcome.message
        decision = Transition(message, JobState.RETRYING, self.worker_id, error=outcome.error)
        try:
            applied = await self.tracker.decide(decision)
        except ServiceUnavailable:
            self.tracker.report(decision)  # written once PostgreSQL answers
            return False
        if applied:
            return False
        row = await self._row(message)
        if row is not None and dead_in(row, message):
            # Another copy decided this generation DEAD and may have died before its dead
            # letter (this copy ran again because its claim was lost with its connection):
            # no retry, the death is carried out here; one row per generation whatever.
            log.info("job %s: an earlier copy decided it dead; storing its death", message.id)
            dead = replace(outcome, verdict=Verdict.DEAD, reason=DeadReason.EXHAUSTED)
            await self.settle(delivery, dead)
            return True
        if row is None or not explains_refusal(row, message):
            return False
        log.info(
            "job %s (%s) failed after a person stopped it or another copy ended it; "
            "its row stands, no retry",
            message.id,
            message.type,
        )
        metrics.labelled(metrics.JOBS_FINISHED, message.queue, message.type, "stopped").inc()
        self.ack(delivery)
        self.processed += 1
        return True

    async def _row(self, message: JobMessage) -> Row | None:
        """The job's row, or None if it has none or PostgreSQL cannot say."""
        assert self.store is not None
        try:
            return await self.store.get_job(message.id)
        except Exception as exc:
            log.warning("job %s: could not read its state (%r)", message.id, exc)
            await self.store.recover(exc)
            return None

    async def refusal_stands(self, message: JobMessage, *, dying: bool = False) -> bool:
        """Whether the row explains why a decisive report was refused (see
        :func:`explains_refusal`). If PostgreSQL cannot say: no, so nothing is dropped."""
        row = await self._row(message)
        return row is not None and explains_refusal(row, message, dying=dying)

    def _succeeded(self, delivery: Delivery, outcome: Outcome) -> None:
        self.ack(delivery)
        self._count_settled(delivery, outcome)
        self.processed += 1

    def _count_settled(self, delivery: Delivery, outcome: Outcome) -> None:
        message = outcome.message
        queue = message.queue if message else self.queue_of(delivery)
        # Label values must stay bounded: a type no handler knows is not a label value.
        known = message is not None and outcome.reason != DeadReason.UNKNOWN_TYPE
        job_type = message.type if known and message else "(unknown)"
        label = {Verdict.SUCCEEDED: "succeeded", Verdict.RETRY: "retried"}.get(
            outcome.verdict, "dead"
        )
        metrics.labelled(metrics.JOBS_FINISHED, queue, job_type, label).inc()
        if outcome.verdict is Verdict.DEAD:
            metrics.labelled(
                metrics.DEAD_LETTERS_PUBLISHED, queue, outcome.reason or DeadReason.EXHAUSTED
            ).inc()


def dead_in(row: Row, message: JobMessage) -> bool:
    """Whether the row says the message's generation is DEAD (written before its dead
    letter is stored, so no proof that the dead letter exists)."""
    return bool(row["generation"] == message.generation and row["state"] == JobState.DEAD.value)


def explains_refusal(row: Row, message: JobMessage, *, dying: bool = False) -> bool:
    """Whether the row explains a refused decisive report: a person stopped this
    generation, the job moved on to a later one, or another copy already ended it.

    ``dying``: the refused report is a death this copy can store. A row DEAD at this
    generation does not explain it away: the copy that wrote it may have died before its
    dead letter, and its redelivered copy, this one if it ran again (its claim, lost with
    its connection, was granted), owes it. The caller stores the death; the key (job id,
    generation) keeps one row if the other copy stored it after all.
    """
    if dying and dead_in(row, message):
        return False
    return bool(row["generation"] > message.generation or row["state"] in _ENDED)
