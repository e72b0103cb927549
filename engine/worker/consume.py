"""The consume loop: take deliveries, run them, act on their outcome, stop cleanly.

Rules the loop keeps:
- an outcome is carried out by engine.worker.settler: its successor (retry copy, dead
  letter) confirmed by the broker before the original's ack;
- a broker retry waits in a delay queue, never in this process: the job holds no slot;
- a redelivered message is counted, or dead-lettered as a crash loop, and a copy of a
  generation whose death is stored or decided never runs again (engine.worker.redelivery);
- with a store, a tracked job runs only if its RUNNING claim is granted (no duplicate
  copy, no stale generation, no job a person stopped). A control loop (engine.worker.control)
  applies queue pauses and stops running jobs a person suspended or cancelled;
- a job whose type a person paused is parked, not run (engine.amqp.parking).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence

import structlog

from engine import metrics
from engine.amqp.broker import Broker
from engine.amqp.parking import Parker
from engine.amqp.port import BrokerPort, Consumers, Delivery
from engine.amqp.topology import work_queue
from engine.deadletters.writer import DeadLetterWriter
from engine.errors import JobStopped, PublishFailed
from engine.message import JobMessage
from engine.outcome import DeadReason, Outcome
from engine.pg.port import WorkerStore
from engine.registry import Handler
from engine.settings import Settings
from engine.states import Verdict
from engine.worker.control import Control, Pauses
from engine.worker.executor import Executor
from engine.worker.redelivery import Redelivery, redeliveries
from engine.worker.settler import AfterOutcome, Settler
from engine.worker.tracker import Tracker, started
from engine.worker.unknown_types import UnknownTypes
from engine.workflows.completion import StepCompletion

log = logging.getLogger("lazarus.worker")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Consumes the given queues with at most ``concurrency`` jobs running per queue.

    Without ``broker`` it opens a RabbitMQ connection of its own, and closes it at
    :meth:`stop`. A ``broker`` given is used as it is (connected by its owner) and left
    open: :meth:`stop` closes only this worker's consumer channel. ``after``: hooks whose
    messages a job's final outcome leads to, published (confirmed) before its ack (see
    :class:`~engine.worker.settler.AfterOutcome`).
    """

    def __init__(
        self,
        settings: Settings,
        queues: list[str],
        *,
        concurrency: int = 32,
        worker_id: str | None = None,
        store: WorkerStore | None = None,
        control_interval: float = 0.5,
        broker: BrokerPort | None = None,
        after: Sequence[AfterOutcome] = (),
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.settings = settings
        self.queues = queues
        self.concurrency = concurrency
        self.worker_id = worker_id or default_worker_id()
        self.broker: BrokerPort = broker or Broker(
            settings, name=f"lazarus-worker {settings.namespace} {self.worker_id}"
        )
        self._owns_broker = broker is None
        self.executor = Executor(self.worker_id, max_message_bytes=settings.max_message_bytes)
        self._consumers: Consumers | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self.store = store
        self.tracker = Tracker(store) if store is not None else None
        self.dead_writer = DeadLetterWriter(store) if store is not None else None
        self.control = (
            Control(store, self._apply_pauses, interval=control_interval)
            if store is not None
            else None
        )
        self._tags: dict[str, str] = {}
        self._paused: frozenset[str] = frozenset()
        self.parker = Parker(self.broker)
        self.unknown_types = UnknownTypes(self.broker, store, settings.unknown_type_grace)
        if store is not None:  # a workflow step's success releases what waited on it
            after = (StepCompletion(store, store, self.broker), *after)
        self.settler = Settler(
            self.broker,
            self.worker_id,
            self._queue_of,
            store=store,
            tracker=self.tracker,
            dead_writer=self.dead_writer,
            after=after,
        )
        self.redelivery = Redelivery(
            settings,
            self.broker,
            self.settler,
            self._queue_of,
            self._sync_consume_channel,
            store=store,
            tracker=self.tracker,
        )

    def running_jobs(self) -> list[str]:
        """Ids of the jobs whose handlers run now, for whoever asks why a worker is busy:
        the control loop's record of them (a worker without a store keeps none)."""
        return self.control.running_jobs() if self.control is not None else []

    @property
    def processed(self) -> int:
        """Jobs whose handler ran and whose outcome was carried out."""
        return self.settler.processed

    async def start(self) -> None:
        """Connect (its own broker), declare the queues and start consuming."""
        if self._owns_broker:
            await self.broker.connect()
        self._consumers = await self.broker.consumers(prefetch=self.concurrency)
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
            if name in self._paused:
                log.info("queue %s is paused: not consuming it", name)
            else:
                await self._consume(name)
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
        await self.settler.acks.drain()
        await self.parker.stop()
        if self.dead_writer is not None:
            await self.dead_writer.stop()
        if self._owns_broker:
            await self.broker.close()  # the consume channel with it
        elif self._consumers is not None:
            await self._consumers.close()  # unacked deliveries go back, redelivered

    async def _stop_consuming(self, name: str) -> None:
        tag = self._tags.pop(name, None)
        if tag is None:
            return
        assert self._consumers is not None
        try:
            await self._consumers.cancel(tag)
        except Exception as exc:  # the channel may already be gone
            log.warning("cancel of consumer %s on %s failed: %r", tag, name, exc)

    async def _consume(self, name: str) -> None:
        assert self._consumers is not None
        queue = work_queue(self.settings.namespace, name)
        self._tags[name] = await self._consumers.consume(queue, self._on_message)

    async def _apply_pauses(self, pauses: Pauses) -> None:
        """Stop consuming the queues a person paused, and consume again the ones resumed;
        park the types paused, move back the jobs of those resumed."""
        self.parker.update(pauses.types)
        paused = pauses.queues
        for name in self.queues:
            if name in paused and name in self._tags:
                log.info("queue %s paused: no new jobs from it", name)
                await self._stop_consuming(name)
            elif name not in paused and name not in self._tags:
                log.info("queue %s resumed", name)
                await self._consume(name)
        self._paused = paused

    async def _on_message(self, delivery: Delivery) -> None:
        self.settler.acks.delivered(delivery)
        task = asyncio.current_task()
        assert task is not None  # the broker runs every delivery in a task of its own
        self._in_flight.add(task)
        in_flight = metrics.labelled(metrics.JOBS_IN_FLIGHT, self._queue_of(delivery))
        in_flight.inc()
        try:
            await self._handle(delivery, task)
        except asyncio.CancelledError:
            # Shutdown or suspension: no ack; the broker redelivers the job.
            raise
        except Exception:
            # Handed back after a pause: a failure that repeats on every delivery must not
            # turn into a hot loop (thousands of tracebacks a second, a core held).
            log.exception("unexpected failure handling a delivery; leaving it to redelivery")
            await self.settler.nack_later(delivery)
        finally:
            in_flight.dec()
            self._in_flight.discard(task)

    async def _handle(self, delivery: Delivery, task: asyncio.Task[None]) -> None:
        prepared = self.executor.prepare(
            delivery.body, delivery.message_id, self._queue_of(delivery), delivery.headers
        )
        if delivery.redelivered:
            await self.redelivery.divert(delivery, prepared)
            return
        # The copy made by a divert may arrive before the broker has taken the original's
        # ack; if the copy then kills the process, both come back and a crash loop doubles
        # its messages on every round. So nothing runs until pending diverts are settled.
        await self.redelivery.settled()
        if isinstance(prepared, Outcome):
            if prepared.message is not None and self.parker.holds(prepared.message.type):
                await self._park(delivery, prepared.message)  # paused while its handler ships
            elif prepared.reason == DeadReason.UNKNOWN_TYPE and await self._turned_back(
                delivery, prepared
            ):
                return
            else:
                await self.settler.settle(delivery, prepared)
            return
        handler, message = prepared
        structlog.contextvars.bind_contextvars(
            job_id=message.id, job_type=message.type, attempt=message.attempt, queue=message.queue
        )
        if redeliveries(delivery) and await self.redelivery.death_stored(delivery, message):
            return
        if self.parker.holds(message.type):
            await self._park(delivery, message)
            return
        tracked = self.tracker is not None and handler.track
        if tracked and redeliveries(delivery):
            message = await self.redelivery.resume_point(message)
        if tracked and not await self._claim(delivery, message):
            if redeliveries(delivery) and await self.redelivery.finish_decided(
                delivery, handler, message
            ):
                return
            log.info(
                "job %s generation %d: duplicate, stale or stopped copy dropped",
                message.id,
                message.generation,
            )
            self.settler.ack(delivery)
            return
        labels = (message.queue, message.type)
        metrics.labelled(metrics.JOBS_STARTED, *labels).inc()
        began = time.perf_counter()
        outcome = await self._run(handler, message, tracked, task)
        metrics.labelled(metrics.JOB_DURATION, *labels).observe(time.perf_counter() - began)
        if outcome is None:  # a person stopped it while it ran: no failure, no retry
            log.info("job %s (%s) stopped by a person while it ran", message.id, message.type)
            metrics.labelled(metrics.JOBS_FINISHED, *labels, "stopped").inc()
            self.settler.ack(delivery)
            return
        if outcome.error is not None:
            metrics.labelled(metrics.JOB_FAILURES, *labels).inc()
        if tracked:
            settled = await self.settler.track(delivery, handler, outcome)
            if settled:
                return
        await self.settler.settle(delivery, outcome, ran=True)

    async def _claim(self, delivery: Delivery, message: JobMessage) -> bool:
        assert self.tracker is not None
        return await self.tracker.claim(started(message, self.worker_id, redeliveries(delivery)))

    async def _run(
        self, handler: Handler, message: JobMessage, tracked: bool, task: asyncio.Task[None]
    ) -> Outcome | None:
        """Run the handler; None if a person's suspension or cancel interrupted it (the
        cancel, or a refused checkpoint, whatever the handler made of it)."""
        if self.control is not None:
            self.control.running(message, task)
        try:
            outcome = await self.executor.run(
                handler, message, self._save_checkpoint if tracked else None, self.store
            )
        except asyncio.CancelledError:
            if self.control is None or not self.control.take_interrupt(message.id):
                raise  # shutdown: no ack, the broker redelivers
            task.uncancel()
            return None
        except JobStopped:
            return None
        else:
            # A handler that caught the person's cancel and failed otherwise was stopped
            # all the same: its error is no reason to retry.
            if self.control is not None and self.control.take_interrupt(message.id):
                if task.cancelling():
                    task.uncancel()
                if outcome.verdict is not Verdict.SUCCEEDED:
                    return None
            return outcome
        finally:
            if self.control is not None:
                self.control.finished(message.id)

    async def _save_checkpoint(self, message: JobMessage, state: object) -> bool:
        assert self.store is not None
        return await self.store.save_checkpoint(message.id, message.generation, state)

    async def _turned_back(self, delivery: Delivery, outcome: Outcome) -> bool:
        """Send a job whose type this worker lacks back for one that has it (a rolling
        deploy); False once it should die as unknown (see engine.worker.unknown_types)."""
        assert outcome.message is not None
        try:
            sent = await self.unknown_types.turn_back(
                outcome.message, delivery.body, delivery.headers
            )
        except PublishFailed as exc:
            log.warning("job %s: not turned back (%s); redelivered later", outcome.job_id, exc)
            await self.settler.nack_later(delivery)
            return True
        if sent:
            self.settler.ack(delivery)
        return sent

    async def _park(self, delivery: Delivery, message: JobMessage) -> None:
        """A person paused this job's type: park it (confirmed), then ack; it does not run."""
        try:
            await self.parker.park(message.type, message.queue, delivery.body, message.id)
        except PublishFailed as exc:
            log.warning("could not park job %s (%s): %s", message.id, message.type, exc)
            await self.settler.nack_later(delivery)
            return
        log.debug("job %s parked: type %s is paused", message.id, message.type)
        metrics.labelled(metrics.JOBS_FINISHED, message.queue, message.type, "parked").inc()
        self.settler.ack(delivery)

    def _queue_of(self, delivery: Delivery) -> str:
        prefix = f"{self.settings.namespace}.q."
        routing_key = delivery.routing_key or ""
        if routing_key and not routing_key.startswith(prefix):
            return routing_key
        return routing_key.removeprefix(prefix) or self.queues[0]

    async def _sync_consume_channel(self) -> None:
        # Returns once the broker has processed every frame sent before, the acks included.
        assert self._consumers is not None
        await self._consumers.sync()
