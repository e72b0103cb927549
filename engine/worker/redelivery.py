"""Messages that come back after their worker died or lost its connection.

Rules kept here:
- a redelivery is counted in a header of a fresh copy (the body stays untouched: its
  attempt belongs to the retry policy), and past ``max_redeliveries`` the message is
  dead-lettered as a crash loop;
- nothing runs while such a copy is being made: the copy may arrive before the broker
  has taken the original's ack, and a crash loop must not double its messages;
- a counted copy of a generation whose death is stored (or only decided: its job row
  says DEAD) never runs again: its dead letter is published from what is stored;
- a decision (DEAD or RETRYING) written before its worker lost the message is carried
  out for the copy that comes back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from engine.amqp.consumer import Delivery
from engine.amqp.port import BrokerPort
from engine.amqp.topology import work_exchange
from engine.errors import PublishFailed, ServiceUnavailable
from engine.message import H_REDELIVERIES, MAX_COUNT, JobMessage
from engine.outcome import DeadReason, ErrorInfo, Outcome
from engine.pg.port import WorkerStore
from engine.registry import Handler
from engine.retry import dead_reason
from engine.settings import Settings
from engine.states import JobState, Verdict
from engine.worker.settler import Settler
from engine.worker.tracker import Tracker, Transition

log = logging.getLogger("lazarus.worker")

__all__ = ["H_REDELIVERIES", "Redelivery", "redeliveries"]


def redeliveries(delivery: Delivery) -> int:
    """How many times this job's message came back after a worker died or lost it (0 if
    the header is out of its bounds: such a message is malformed, see check_headers)."""
    count = (delivery.headers or {}).get(H_REDELIVERIES, 0)
    valid = isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= MAX_COUNT
    return count if valid else 0


class Redelivery:
    """Counts, diverts and finishes the redelivered messages of one worker.

    ``sync_channel`` awaits a synchronous method on the consume channel: it returns
    only after the broker has processed every frame sent before it (acks included).
    """

    def __init__(
        self,
        settings: Settings,
        broker: BrokerPort,
        settler: Settler,
        queue_of: Callable[[Delivery], str],
        sync_channel: Callable[[], Awaitable[None]],
        *,
        store: WorkerStore | None = None,
        tracker: Tracker | None = None,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.settler = settler
        self.queue_of = queue_of
        self.sync_channel = sync_channel
        self.store = store
        self.tracker = tracker
        self._diverting = 0
        self._no_divert_pending = asyncio.Event()
        self._no_divert_pending.set()

    async def settled(self) -> None:
        """Return once no counted copy is being made."""
        await self._no_divert_pending.wait()

    async def divert(
        self, delivery: Delivery, prepared: Outcome | tuple[Handler, JobMessage]
    ) -> None:
        """Count a redelivery in a fresh copy, or dead-letter a crash loop; ``prepared``
        is what the executor made of the delivery.

        The broker's own redelivered flag cannot count, so the count travels in a header.
        """
        if isinstance(prepared, Outcome) and prepared.reason == DeadReason.MALFORMED:
            # It never runs a handler, so it cannot be what killed a worker: it dies once.
            await self.settler.settle(delivery, prepared)
            return
        count = redeliveries(delivery) + 1
        if count > self.settings.max_redeliveries:
            await self._kill_crash_loop(delivery, prepared, count)
            return
        headers = dict(delivery.headers or {})
        headers[H_REDELIVERIES] = count
        # A body without an id keeps the one it was given here in the copy's message id.
        job_id = prepared.job_id if isinstance(prepared, Outcome) else prepared[1].id
        self._diverting += 1
        self._no_divert_pending.clear()
        try:
            await self._republish_counted(delivery, headers, job_id)
        finally:
            self._diverting -= 1
            if not self._diverting:
                self._no_divert_pending.set()

    async def _republish_counted(
        self, delivery: Delivery, headers: dict[str, Any], job_id: str
    ) -> None:
        try:
            await self.broker.publish(
                work_exchange(self.settings.namespace),
                self.queue_of(delivery),
                delivery.body,
                headers,
                delivery.message_id or job_id,
            )
        except PublishFailed as exc:
            log.warning("could not republish redelivered job %s: %s", job_id, exc)
            await self.settler.nack_later(delivery)
            return
        self.settler.ack(delivery)
        await self.settler.acks.drain()  # the ack is written now, not at the end of the tick
        try:
            await self.sync_channel()
        except Exception as exc:  # channel gone: the original comes back, counted again
            log.warning("could not confirm the ack of redelivered job %s: %r", job_id, exc)

    async def _kill_crash_loop(
        self, delivery: Delivery, prepared: Outcome | tuple[Handler, JobMessage], count: int
    ) -> None:
        """Dead-letter a message that keeps coming back without finishing.

        A tracked job's death is decided first, like any other: if a person stopped the job
        meanwhile, their state stands and the message is only acked.
        """
        error = ErrorInfo(
            "CrashLoop",
            f"delivered {count} times without finishing; the worker died or lost its "
            "connection each time "
            f"(limit LAZARUS_MAX_REDELIVERIES={self.settings.max_redeliveries})",
            "",
        )
        if isinstance(prepared, Outcome):  # not a job this worker can read: dead as it is
            outcome = Outcome(Verdict.DEAD, None, prepared.job_id, error, DeadReason.CRASH_LOOP)
            await self.settler.settle(delivery, outcome)
            return
        handler, message = prepared
        outcome = Outcome(Verdict.DEAD, message, message.id, error, DeadReason.CRASH_LOOP)
        if self.tracker is not None and handler.track:
            decision = Transition(
                message,
                JobState.DEAD,
                self.settler.worker_id,
                redeliveries=count,
                error=error,
                cause=f"{error.type}: {error.message}",
            )
            try:
                applied = await self.tracker.decide(decision)
            except ServiceUnavailable:
                self.tracker.report(decision)  # written once PostgreSQL answers
                applied = True  # dead letters do not need the job row: the recorder keeps them
            if not applied and await self.settler.refusal_stands(message, dying=True):
                log.info(
                    "job %s crash-looped after a person stopped it; their state stands", message.id
                )
                self.settler.ack(delivery)
                return
        await self.settler.settle(delivery, outcome)

    async def death_stored(self, delivery: Delivery, message: JobMessage) -> bool:
        """If this generation's death is stored, publish its dead letter again and ack; True.

        The crash point between the row's commit and the copy's confirm: the copy may be
        missing, and the job must not run again. If PostgreSQL cannot say, the job runs
        (availability first, as a claim does).
        """
        if self.store is None:
            return False
        try:
            row = await self.store.stored_death(message.id, message.generation)
        except Exception as exc:
            log.warning("job %s: cannot check for a stored death (%r); running it", message.id, exc)
            return False
        if row is None:
            return False
        await self.settler.republish_stored_death(delivery, message, row)
        return True

    async def resume_point(self, message: JobMessage) -> JobMessage:
        """``message`` with the checkpoint its run saved last, for a copy that came back
        after its worker died or was stopped past its grace: it resumes from there, as a
        ``recover`` does, not from the checkpoint its message carries.

        Only the same generation and attempt, still RUNNING (the claim of the run that was
        lost), counts; if PostgreSQL cannot say, the message's own checkpoint is used.
        """
        assert self.store is not None
        try:
            job = await self.store.get_job(message.id)
        except Exception as exc:
            log.warning(
                "job %s: cannot read its latest checkpoint (%r); running from its message's",
                message.id,
                exc,
            )
            await self.store.recover(exc)
            return message
        if (
            job is None
            or job["checkpoint"] is None
            or job["state"] != JobState.RUNNING.value
            or (job["generation"], job["attempt"]) != (message.generation, message.attempt)
        ):
            return message
        log.info("job %s: resuming from the checkpoint its last run saved", message.id)
        return replace(message, checkpoint=job["checkpoint"])

    async def finish_decided(
        self, delivery: Delivery, handler: Handler, message: JobMessage
    ) -> bool:
        """Finish what this attempt's worker decided before it lost the message; True if
        settled here. False leaves the refused copy to be dropped.

        The decision (DEAD or RETRYING) is written before its message is published, so a
        worker that dies, or whose publish fails, in between leaves a job row that refuses
        the redelivered copy's claim. Without this the job would be dead with no dead
        letter, or retrying with no retry. A DEAD job gets its dead letter from the row (the
        reason is told from the attempt, by :func:`engine.retry.dead_reason`); a RETRYING
        one gets its retry published again (if the first one was published after all, the
        claims of the two copies let one run).
        """
        assert self.store is not None
        try:
            job = await self.store.get_job(message.id)
        except Exception as exc:
            log.warning("job %s: cannot read its state (%r); redelivering", message.id, exc)
            await self.settler.nack_later(delivery)
            return True
        if job is None or job["generation"] != message.generation:
            return False
        error = ErrorInfo(
            job["error_type"] or "Unknown", job["error_message"] or "", job["traceback"] or ""
        )
        if job["state"] == JobState.DEAD.value:
            reason = dead_reason(handler.policy, None, message.attempt, message.max_retries)
            log.warning(
                "job %s: dead before its dead letter was stored; storing it now", message.id
            )
            dead = Outcome(Verdict.DEAD, message, message.id, error, reason)
            await self.settler.settle(delivery, dead)
            return True
        if job["state"] == JobState.RETRYING.value and job["attempt"] == message.attempt:
            log.warning("job %s: retry decided, maybe never published; publishing it", message.id)
            delay = handler.policy.broker_delay(message.attempt)
            retry = Outcome(
                Verdict.RETRY, message, message.id, error, delay=delay, checkpoint=job["checkpoint"]
            )
            await self.settler.settle(delivery, retry)
            return True
        return False
