"""The consume loop: take deliveries, run them, act on their outcome, stop cleanly.

Rules the loop keeps:
- an original is acked only after its successor (retry copy, dead letter,
  redelivery copy) is confirmed by the broker; a failed publish means no ack;
- a broker retry waits in a delay queue, never in this process: the job holds no slot;
- with a store, a death is stored before its copy is published (engine.dead_writer),
  and a redelivered copy of a generation whose death is stored (or only decided: its
  job row says DEAD) never runs again: its dead letter is stored and published from
  what is stored, and the copy is acked;
- a message delivered again after its worker died is counted in a header, and
  dead-lettered as a crash loop past ``max_redeliveries``;
- with a store, a tracked job runs only if its RUNNING claim is granted (no duplicate
  copy, no stale generation, no job a person stopped), and a worker-side failure never
  overwrites a person's suspension. A control loop (engine.control) applies queue
  pauses and stops running jobs a person suspended or cancelled;
- a job whose type a person paused is parked, not run (engine.parking).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import replace
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractQueue

from engine import metrics
from engine.acks import AckBatcher
from engine.broker import Broker
from engine.consumer import Delivery, LightConsumer
from engine.control import Control, Pauses
from engine.dead_records import dead_record
from engine.dead_writer import DeadLetterWriter
from engine.deadletter import H_TRACEBACK, dead_headers, publish_dead
from engine.errors import PublishFailed, ServiceUnavailable
from engine.executor import DeadReason, ErrorInfo, Executor, Outcome
from engine.message import JobMessage, encode
from engine.parking import Parker
from engine.registry import Handler
from engine.settings import Settings
from engine.states import JobState, Verdict
from engine.store import Store
from engine.topology import (
    declare_queue,
    delay_tier_ms,
    work_exchange,
    work_queue,
    work_queue_arguments,
)
from engine.tracker import Tracker, Transition, started

log = logging.getLogger("lazarus.worker")

H_REDELIVERIES = "x-lazarus-redeliveries"
# Row states that end a generation: a decisive report refused against one stands.
_ENDED = frozenset(
    s.value for s in (JobState.SUCCEEDED, JobState.DEAD, JobState.SUSPENDED, JobState.CANCELLED)
)

# After a failed publish, wait this long before handing the message back, so a broker
# that refuses publishes does not turn into a hot redelivery loop.
NACK_BACKOFF = 1.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Consumes the given queues with at most ``concurrency`` jobs running per queue."""

    def __init__(
        self,
        settings: Settings,
        queues: list[str],
        *,
        concurrency: int = 32,
        worker_id: str | None = None,
        store: Store | None = None,
        control_interval: float = 0.5,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.settings = settings
        self.queues = queues
        self.concurrency = concurrency
        self.worker_id = worker_id or default_worker_id()
        self.broker = Broker(settings, name=f"lazarus-worker {settings.namespace} {self.worker_id}")
        self.executor = Executor(self.worker_id, max_message_bytes=settings.max_message_bytes)
        self._consume_channel: AbstractChannel | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self.store = store
        self.tracker = Tracker(store) if store is not None else None
        self.dead_writer = DeadLetterWriter(store) if store is not None else None
        self.control = (
            Control(store, self._apply_pauses, interval=control_interval)
            if store is not None
            else None
        )
        self._queues: dict[str, AbstractQueue] = {}
        self._tags: dict[str, str] = {}
        self._paused: frozenset[str] = frozenset()
        self.parker = Parker(self.broker)
        self._acks = AckBatcher()
        self._consumer = LightConsumer(self._on_message)
        self._diverting = 0
        self._no_divert_pending = asyncio.Event()
        self._no_divert_pending.set()
        self.processed = 0

    async def start(self) -> None:
        """Connect, declare the queues and start consuming."""
        await self.broker.connect()
        self._consume_channel = await self.broker.connection.channel()
        await self._consume_channel.set_qos(prefetch_count=self.concurrency)
        if self.tracker is not None:
            self.tracker.start()
        if self.dead_writer is not None:
            self.dead_writer.start()
        if self.control is not None:
            pauses = await self.control.read_pauses() or Pauses()
            self._paused = pauses.queues
            self.parker.update(pauses.types)
        for name in self.queues:
            await self.broker.declare_work_queue(name)
            # Declared (not just looked up) on this channel: a robust channel restores only
            # the queues declared on it, and their consumers with them, after a reconnect.
            queue = await declare_queue(
                self._consume_channel,
                work_queue(self.settings.namespace, name),
                work_queue_arguments(self.settings.namespace, self.settings.queue_type),
            )
            self._queues[name] = queue
            if name in self._paused:
                log.info("queue %s is paused: not consuming it", name)
            else:
                self._tags[name] = await queue.consume(self._consumer)
        if self.control is not None:
            self.control.start()
        log.info("worker %s consuming %s", self.worker_id, ", ".join(self.queues))

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking jobs; give in-flight ones ``grace`` seconds; leave the rest to redelivery."""
        if self.control is not None:
            await self.control.stop()
        for name in list(self._tags):
            await self._stop_consuming(name)
        pending = set(self._in_flight)
        if pending:
            wait = self.settings.shutdown_grace if grace is None else grace
            log.info("waiting up to %.1f s for %d in-flight jobs", wait, len(pending))
            _, still_running = await asyncio.wait(pending, timeout=wait)
            for task in still_running:
                task.cancel()
            if still_running:
                log.warning("%d jobs left for redelivery", len(still_running))
                await asyncio.wait(still_running, timeout=5)
        if self.tracker is not None:
            await self.tracker.stop()  # acks the successes it writes
        await self._acks.drain()
        await self.parker.stop()
        if self.dead_writer is not None:
            await self.dead_writer.stop()
        await self.broker.close()

    async def _stop_consuming(self, name: str) -> None:
        tag = self._tags.pop(name, None)
        if tag is None:
            return
        try:
            await self._queues[name].cancel(tag)
        except Exception as exc:  # the channel may already be gone
            log.warning("cancel of consumer %s on %s failed: %r", tag, name, exc)

    async def _apply_pauses(self, pauses: Pauses) -> None:
        """Stop consuming the queues a person paused, and consume again the ones resumed;
        park the types paused, move back the jobs of those resumed."""
        self.parker.update(pauses.types)
        paused = pauses.queues
        for name, queue in self._queues.items():
            if name in paused and name in self._tags:
                log.info("queue %s paused: no new jobs from it", name)
                await self._stop_consuming(name)
            elif name not in paused and name not in self._tags:
                log.info("queue %s resumed", name)
                self._tags[name] = await queue.consume(self._consumer)
        self._paused = paused

    async def _on_message(self, delivery: Delivery) -> None:
        self._acks.delivered(delivery)
        task = asyncio.current_task()
        assert task is not None  # aiormq runs every delivery in a task of its own
        self._in_flight.add(task)
        in_flight = metrics.labelled(metrics.JOBS_IN_FLIGHT, self._queue_of(delivery))
        in_flight.inc()
        try:
            await self._handle(delivery, task)
        except asyncio.CancelledError:
            # Shutdown or suspension: no ack; the broker redelivers the job.
            raise
        except Exception:
            log.exception("unexpected failure handling a delivery; leaving it to redelivery")
            await self._nack(delivery)
        finally:
            in_flight.dec()
            self._in_flight.discard(task)

    async def _handle(self, delivery: Delivery, task: asyncio.Task[None]) -> None:
        if delivery.redelivered and await self._divert_redelivery(delivery):
            return
        # The copy made by a divert may arrive before the broker has taken the original's
        # ack; if the copy then kills the process, both come back and a crash loop doubles
        # its messages on every round. So nothing runs until pending diverts are settled.
        await self._no_divert_pending.wait()
        prepared = self.executor.prepare(
            delivery.body, delivery.message_id, self._queue_of(delivery)
        )
        if isinstance(prepared, Outcome):
            if prepared.message is not None and self.parker.holds(prepared.message.type):
                await self._park(delivery, prepared.message)  # paused while its handler ships
            else:
                await self._settle(delivery, prepared)
            return
        handler, message = prepared
        structlog.contextvars.bind_contextvars(
            job_id=message.id, job_type=message.type, attempt=message.attempt, queue=message.queue
        )
        if redeliveries(delivery) and await self._death_stored(delivery, message):
            return
        if self.parker.holds(message.type):
            await self._park(delivery, message)
            return
        tracked = self.tracker is not None and handler.track
        if tracked and not await self._claim(delivery, message):
            if redeliveries(delivery) and await self._finish_decided(delivery, handler, message):
                return
            log.info(
                "job %s generation %d: duplicate, stale or stopped copy dropped",
                message.id,
                message.generation,
            )
            self._ack(delivery)
            return
        labels = (message.queue, message.type)
        metrics.labelled(metrics.JOBS_STARTED, *labels).inc()
        began = time.perf_counter()
        outcome = await self._run(handler, message, tracked, task)
        metrics.labelled(metrics.JOB_DURATION, *labels).observe(time.perf_counter() - began)
        if outcome is None:  # a person stopped it while it ran
            metrics.labelled(metrics.JOBS_FINISHED, *labels, "stopped").inc()
            self._ack(delivery)
            return
        if outcome.error is not None:
            metrics.labelled(metrics.JOB_FAILURES, *labels).inc()
        if tracked:
            settled = await self._track(delivery, handler, outcome)
            if settled:
                return
        await self._settle(delivery, outcome)
        self.processed += 1

    async def _claim(self, delivery: Delivery, message: JobMessage) -> bool:
        assert self.tracker is not None
        return await self.tracker.claim(started(message, self.worker_id, redeliveries(delivery)))

    async def _death_stored(self, delivery: Delivery, message: JobMessage) -> bool:
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
        headers = dict(row["headers"] or {}) | {H_TRACEBACK: row["traceback"]}
        try:
            await publish_dead(self.broker, bytes(row["body"]), message.id, headers, stored=True)
        except PublishFailed as exc:
            log.warning(
                "job %s: dead letter not confirmed, leaving it to redelivery: %s", message.id, exc
            )
            await self._nack(delivery, backoff=NACK_BACKOFF)
            return True
        log.info(
            "job %s generation %d died before: dead letter published again",
            message.id,
            message.generation,
        )
        self._ack(delivery)
        return True

    async def _finish_decided(
        self, delivery: Delivery, handler: Handler, message: JobMessage
    ) -> bool:
        """Finish what this attempt's worker decided before it lost the message; True if
        settled here. False leaves the refused copy to be dropped.

        The decision (DEAD or RETRYING) is written before its message is published, so a
        worker that dies, or whose publish fails, in between leaves a job row that refuses
        the redelivered copy's claim. Without this the job would be dead with no dead
        letter, or retrying with no retry. A DEAD job gets its dead letter from the row (the
        reason is told from the attempt: a permanent error on the last attempt reads
        "retries exhausted"); a RETRYING one gets its retry published again (if the first
        one was published after all, the claims of the two copies let one run).
        """
        assert self.store is not None
        try:
            job = await self.store.get_job(message.id)
        except Exception as exc:
            log.warning("job %s: cannot read its state (%r); redelivering", message.id, exc)
            await self._nack(delivery, backoff=NACK_BACKOFF)
            return True
        if job is None or job["generation"] != message.generation:
            return False
        error = ErrorInfo(
            job["error_type"] or "Unknown", job["error_message"] or "", job["traceback"] or ""
        )
        if job["state"] == JobState.DEAD.value:
            policy = handler.policy
            budget = policy.max_retries if message.max_retries is None else message.max_retries
            reason = DeadReason.EXHAUSTED if message.attempt >= budget else DeadReason.PERMANENT
            log.warning(
                "job %s: dead before its dead letter was stored; storing it now", message.id
            )
            await self._settle(delivery, Outcome(Verdict.DEAD, message, message.id, error, reason))
            return True
        if job["state"] == JobState.RETRYING.value and job["attempt"] == message.attempt:
            log.warning("job %s: retry decided, maybe never published; publishing it", message.id)
            delay = handler.policy.broker_delay(message.attempt)
            retry = Outcome(
                Verdict.RETRY, message, message.id, error, delay=delay, checkpoint=job["checkpoint"]
            )
            await self._settle(delivery, retry)
            return True
        return False

    async def _run(
        self, handler: Handler, message: JobMessage, tracked: bool, task: asyncio.Task[None]
    ) -> Outcome | None:
        """Run the handler; None if a person's suspension or cancel interrupted it."""
        if self.control is not None:
            self.control.running(message, task)
        try:
            return await self.executor.run(
                handler, message, self._save_checkpoint if tracked else None
            )
        except asyncio.CancelledError:
            if self.control is None or not self.control.take_interrupt(message.id):
                raise  # shutdown: no ack, the broker redelivers
            task.uncancel()
            return None
        finally:
            if self.control is not None:
                self.control.finished(message.id)

    async def _save_checkpoint(self, message: JobMessage, state: object) -> bool:
        assert self.store is not None
        return await self.store.save_checkpoint(message.id, message.generation, state)

    async def _track(self, delivery: Delivery, handler: Handler, outcome: Outcome) -> bool:
        """Report the outcome's state; True if the delivery was settled here.

        A DEAD or SUSPENDED verdict is written before anything is published: if a person
        stopped the job meanwhile, their state stands and the job is only acked.
        """
        assert self.tracker is not None and outcome.message is not None
        message, error = outcome.message, outcome.error
        if outcome.verdict is Verdict.SUCCEEDED:
            # Acked once the row is written: a worker that dies in between leaves a copy
            # that finds its job SUCCEEDED, never a RUNNING row for a job that is done.
            self.tracker.report_then(
                Transition(message, JobState.SUCCEEDED, self.worker_id),
                lambda: self._succeeded(delivery, outcome),
            )
            return True
        if outcome.verdict is Verdict.RETRY:
            self.tracker.report(Transition(message, JobState.RETRYING, self.worker_id, error=error))
            return False
        suspend = message.suspend_on_failure
        if suspend is None:
            suspend = handler.suspend_on_failure
        state = JobState.SUSPENDED if suspend else JobState.DEAD
        cause = f"{error.type}: {error.message}" if error else None
        decision = Transition(message, state, self.worker_id, error=error, cause=cause)
        try:
            applied = await self.tracker.decide(decision)
        except ServiceUnavailable as exc:
            if suspend:  # the row is the only copy of a suspended job: keep the message
                log.warning("job %s: cannot record its suspension (%s); retrying", message.id, exc)
                await self._nack(delivery, backoff=NACK_BACKOFF)
                return True
            # The dead letter does not need the row (the recorder keeps it); the row says
            # DEAD once PostgreSQL answers.
            self.tracker.report(decision)
            return False
        if not applied and not await self._refusal_stands(message):
            # Refused, yet no person holds the job: the write's fate is unknown. A death
            # is stored as a dead letter anyway; a suspension is tried again.
            if suspend:
                await self._nack(delivery, backoff=NACK_BACKOFF)
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
            self._ack(delivery)
            self.processed += 1
            return True
        return False

    async def _refusal_stands(self, message: JobMessage) -> bool:
        """Whether the row explains why a decisive report was refused: a person stopped
        this generation, the job moved on to a later one, or another copy already ended
        it. If PostgreSQL cannot say: no, so nothing is dropped."""
        assert self.store is not None
        try:
            row = await self.store.get_job(message.id)
        except Exception as exc:
            log.warning("job %s: could not read its state (%r)", message.id, exc)
            await self.store.recover(exc)
            return False
        if row is None:
            return False
        return bool(row["generation"] > message.generation or row["state"] in _ENDED)

    async def _divert_redelivery(self, delivery: Delivery) -> bool:
        """Count a redelivery in a fresh copy, or dead-letter a crash loop. True if handled here.

        The broker's own redelivered flag cannot count; the body must stay untouched
        (its attempt belongs to the retry policy), so the count travels in a header.
        """
        previous = (delivery.headers or {}).get(H_REDELIVERIES, 0)
        count = (previous if isinstance(previous, int) else 0) + 1
        prepared = self.executor.prepare(
            delivery.body, delivery.message_id, self._queue_of(delivery)
        )
        if count > self.settings.max_redeliveries:
            await self._kill_crash_loop(delivery, prepared, count)
            return True
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
        return True

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
            await self._settle(delivery, outcome)
            return
        handler, message = prepared
        outcome = Outcome(Verdict.DEAD, message, message.id, error, DeadReason.CRASH_LOOP)
        if self.tracker is not None and handler.track:
            decision = Transition(
                message,
                JobState.DEAD,
                self.worker_id,
                redeliveries=count,
                error=error,
                cause=f"{error.type}: {error.message}",
            )
            try:
                applied = await self.tracker.decide(decision)
            except ServiceUnavailable:
                self.tracker.report(decision)  # written once PostgreSQL answers
                applied = True  # dead letters do not need the job row: the recorder keeps them
            if not applied and await self._refusal_stands(message):
                log.info(
                    "job %s crash-looped after a person stopped it; their state stands", message.id
                )
                self._ack(delivery)
                return
        await self._settle(delivery, outcome)

    async def _republish_counted(
        self, delivery: Delivery, headers: dict[str, Any], job_id: str
    ) -> None:
        try:
            await self.broker.publish(
                work_exchange(self.settings.namespace),
                self._queue_of(delivery),
                delivery.body,
                headers,
                delivery.message_id or job_id,
            )
        except PublishFailed as exc:
            log.warning("could not republish redelivered job %s: %s", job_id, exc)
            await self._nack(delivery, backoff=NACK_BACKOFF)
            return
        self._ack(delivery)
        await self._acks.drain()  # the ack is written now, not at the end of the tick
        # basic.ack has no reply; a synchronous method on the same channel returns only
        # after the broker has processed every frame sent before it, the ack included.
        try:
            assert self._consume_channel is not None
            await self._consume_channel.set_qos(prefetch_count=self.concurrency)
        except Exception as exc:  # channel gone: the original comes back, counted again
            log.warning("could not confirm the ack of redelivered job %s: %r", job_id, exc)

    async def _park(self, delivery: Delivery, message: JobMessage) -> None:
        """A person paused this job's type: park it (confirmed), then ack; it does not run."""
        try:
            await self.parker.park(message.type, message.queue, delivery.body, message.id)
        except PublishFailed as exc:
            log.warning("could not park job %s (%s): %s", message.id, message.type, exc)
            await self._nack(delivery, backoff=NACK_BACKOFF)
            return
        log.debug("job %s parked: type %s is paused", message.id, message.type)
        metrics.labelled(metrics.JOBS_FINISHED, message.queue, message.type, "parked").inc()
        self._ack(delivery)

    def _queue_of(self, delivery: Delivery) -> str:
        prefix = f"{self.settings.namespace}.q."
        routing_key = delivery.routing_key or ""
        if routing_key and not routing_key.startswith(prefix):
            return routing_key
        return routing_key.removeprefix(prefix) or self.queues[0]

    async def _settle(self, delivery: Delivery, outcome: Outcome) -> None:
        """Carry out an outcome: publish its successor (confirmed), then ack."""
        try:
            if outcome.verdict is Verdict.RETRY:
                assert outcome.message is not None
                retry = replace(outcome.message.next_attempt(), checkpoint=outcome.checkpoint)
                exchange, key = await self.broker.delay_route(
                    retry.queue, delay_tier_ms(outcome.delay)
                )
                await self.broker.publish(exchange, key, encode(retry), None, retry.id)
                log.info(
                    "job %s (%s) failed attempt %d, retrying in %.1f s: %s",
                    retry.id,
                    retry.type,
                    retry.attempt,
                    outcome.delay,
                    outcome.error.message if outcome.error else "",
                )
            elif outcome.verdict is Verdict.DEAD:
                message = outcome.message
                headers = dead_headers(
                    reason=outcome.reason or DeadReason.EXHAUSTED,
                    error=outcome.error,
                    worker_id=self.worker_id,
                    queue=message.queue if message else self._queue_of(delivery),
                    message=message,
                )
                stored = await self._store_death(delivery.body, outcome, headers)
                await publish_dead(
                    self.broker, delivery.body, outcome.job_id, headers, stored=stored
                )
                log.warning(
                    "job %s dead (%s): %s",
                    outcome.job_id,
                    outcome.reason,
                    outcome.error.message if outcome.error else "",
                )
        except PublishFailed as exc:
            log.error(
                "job %s: successor not confirmed, leaving it to redelivery: %s", outcome.job_id, exc
            )
            await self._nack(delivery, backoff=NACK_BACKOFF)
            return
        self._ack(delivery)
        self._count_settled(delivery, outcome)

    async def _store_death(self, body: bytes, outcome: Outcome, headers: dict[str, Any]) -> bool:
        """Store the death's row; False if there is no store or it failed (the recorder will)."""
        if self.dead_writer is None:
            return False
        record = dead_record(body, outcome.job_id, headers, outcome.message)
        try:
            await self.dead_writer.write(record)
        except ServiceUnavailable:
            return False
        return True

    def _succeeded(self, delivery: Delivery, outcome: Outcome) -> None:
        self._ack(delivery)
        self._count_settled(delivery, outcome)
        self.processed += 1

    def _count_settled(self, delivery: Delivery, outcome: Outcome) -> None:
        message = outcome.message
        queue = message.queue if message else self._queue_of(delivery)
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

    def _ack(self, delivery: Delivery) -> None:
        """Ack once this tick ends, batched with its neighbours (see engine.acks)."""
        self._acks.ack(delivery)

    async def _nack(self, delivery: Delivery, backoff: float = 0.0) -> None:
        """Hand a delivery back to the broker (after ``backoff`` seconds)."""
        if backoff:
            await asyncio.sleep(backoff)
        try:
            await delivery.nack(requeue=True)
        except Exception as exc:
            log.warning("nack failed (%r); the message will be redelivered", exc)
        self._acks.settled(delivery)


def redeliveries(delivery: Delivery) -> int:
    """How many times this job's message came back after a worker died or lost it."""
    count = (delivery.headers or {}).get(H_REDELIVERIES, 0)
    return count if isinstance(count, int) else 0
