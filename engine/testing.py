"""Run your handlers in a test, through the real engine, without RabbitMQ or PostgreSQL.

:class:`Lazarus` is a whole deployment in process memory: the in-memory broker
(:class:`~engine.memory.broker.InMemoryBroker`, with queues, delay queues, dead-letter
exchanges and a virtual clock) and store (:class:`~engine.memory.store.InMemoryStore`,
with the compare-and-set rules of the PostgreSQL one), and on them the real worker,
executor, retry decisions, settler, dead-letter writer, recorder, outbox relay and admin
facade. A job you enqueue is encoded to bytes and decoded again as a producer's would be;
its retries go through delay queues whose waits :meth:`Lazarus.drain` skips on the
virtual clock; its death is a dead-letter row and a copy on ``<ns>.dead``; a requeue
stages the next generation in the outbox and the relay publishes it.

Unlike an "eager" mode that calls the function directly (Celery's ``task_always_eager``),
nothing is skipped: a payload that cannot be serialised fails here as it would in
production, and a retry policy is exercised attempt by attempt.

With pytest (and pytest-asyncio) installed, the ``lazarus`` fixture gives a started
:class:`Lazarus` per test; ``@pytest.mark.lazarus(queues=[...], concurrency=...)`` passes
options.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.admin.facade import Admin
from engine.admin.rows import DeadLetter, Job, JobSummary
from engine.amqp.topology import retained_queue, work_exchange
from engine.client import Client, Enqueued
from engine.deadletters.recorder import Recorder
from engine.errors import LazarusError
from engine.filters import DeadFilter
from engine.memory.broker import InMemoryBroker, Published
from engine.memory.clock import VirtualClock
from engine.memory.store import InMemoryStore
from engine.outbox.relay import drain as drain_outbox
from engine.registry import Handler, HandlerFunc, handler, swap
from engine.retry import RetryPolicy
from engine.settings import Settings, load_settings
from engine.states import DeadStatus, JobState, RequeueMode
from engine.worker.consume import Worker
from engine.worker.settler import AfterOutcome
from engine.workflows import Started, Workflow, start_workflow

__all__ = ["DrainTimeout", "Drained", "Lazarus"]

ACTOR = "test"


class DrainTimeout(LazarusError):
    """Work was still in flight when :meth:`Lazarus.drain` gave up; the message says what."""


@dataclass(frozen=True, slots=True)
class Drained:
    """What one :meth:`Lazarus.drain` saw."""

    delays_skipped: int  # delay-queue waits jumped over on the virtual clock
    virtual_seconds: float  # how far the virtual clock moved
    waiting: dict[str, int] = field(default_factory=dict)  # ready, unconsumed: paused, parked


class Lazarus:
    """A worker, a recorder and an admin over an in-memory broker and store.

    Use as ``async with Lazarus() as lazarus:`` (or the ``lazarus`` pytest fixture).
    Handlers registered while it is open (:meth:`handler`) are unregistered when it
    closes; handlers your modules register at import stay, as in a worker. Without
    ``settings`` it reads ``LAZARUS_*`` as a worker does, in a namespace of its own, and a
    job of an unknown type dies at once; given ``settings`` are used as they are.
    ``after``: the worker's after-outcome hooks (:class:`~engine.worker.settler.AfterOutcome`).
    """

    def __init__(
        self,
        *,
        queues: tuple[str, ...] | list[str] = ("default",),
        concurrency: int = 8,
        settings: Settings | None = None,
        after: Sequence[AfterOutcome] = (),
    ) -> None:
        if settings is None:  # no rolling deploy to wait for an unknown type's handler here
            update = {"namespace": f"lzt{uuid.uuid4().hex[:8]}", "unknown_type_grace": 0}
            settings = load_settings().model_copy(update=update)
        self.settings = settings
        self.queues = list(queues)
        self.clock = VirtualClock()
        self.broker = InMemoryBroker(self.settings, clock=self.clock)
        self.store = InMemoryStore()
        self.client = Client(self.settings, broker=self.broker, store=self.store)
        self.admin = Admin.over(self.store, self.broker, settings=self.settings, actor=ACTOR)
        self.worker = Worker(
            self.settings,
            self.queues,
            concurrency=concurrency,
            worker_id="test-worker",
            store=self.store,
            broker=self.broker,
            control_interval=0.02,
            after=after,
        )
        self.recorder = Recorder(self.broker, self.store)
        self._registered: dict[str, Handler | None] = {}

    async def __aenter__(self) -> Lazarus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        await self.broker.connect()
        for queue in self.queues:
            await self.broker.declare_work_queue(queue)
        await self.recorder.start()
        await self.worker.start()

    async def stop(self) -> None:
        try:
            await self.worker.stop(grace=0)
            await self.recorder.stop()
            await self.broker.close()
        finally:
            for name, previous in self._registered.items():
                swap(name, previous)

    # -- handlers and jobs -------------------------------------------------------------

    def handler(
        self,
        name: str | None = None,
        *,
        queue: str = "default",
        policy: RetryPolicy | None = None,
        **options: Any,
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """:func:`engine.handler`, undone when this closes. The queue must be one of
        ``queues`` (the worker consumes those)."""
        if queue not in self.queues:
            raise ValueError(f"queue {queue!r} is not consumed here: pass queues=[..., {queue!r}]")
        register = handler(name, queue=queue, policy=policy, **options)

        def remember(func: HandlerFunc) -> HandlerFunc:
            job_type = name or func.__name__
            previous = swap(job_type, None)  # a test may register its own under a known name
            self._registered.setdefault(job_type, previous)
            return register(func)

        return remember

    async def enqueue(self, job_type: str, payload: Any = None, **options: Any) -> str:
        """:meth:`engine.Client.enqueue` on the in-memory broker; returns the job id."""
        return await self.client.enqueue(job_type, payload, **options)

    async def enqueue_if_absent(
        self, job_type: str, payload: Any = None, *, key: str, **options: Any
    ) -> Enqueued:
        """:meth:`engine.Client.enqueue_if_absent` on the in-memory store and broker."""
        return await self.client.enqueue_if_absent(job_type, payload, key=key, **options)

    async def start_workflow(
        self, workflow: Workflow, input: Any = None, **options: Any
    ) -> Started:
        """:func:`engine.workflows.start_workflow` on the in-memory store and broker."""
        return await start_workflow(self.store, self.broker, workflow, input, **options)

    async def workflow(self, workflow_id: str) -> dict[str, Any]:
        """The workflow's row, with ``steps`` (name -> state) and ``results`` (name ->
        result of each step that succeeded)."""
        row = await self.store.get_workflow(workflow_id)
        if row is None:
            raise LazarusError(f"no workflow {workflow_id!r}")
        steps = await self.store.workflow_steps(workflow_id, limit=1_000_000)
        return dict(row) | {
            "steps": {s["step"]: s["state"] for s in steps},
            "results": {s["step"]: s["result"] for s in steps if s["state"] == "succeeded"},
        }

    async def publish_raw(
        self,
        body: bytes,
        *,
        queue: str = "default",
        message_id: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Publish bytes as a producer in another language would, to work queue ``queue``."""
        await self.broker.ensure_work_queue(queue)
        await self.broker.publish(
            work_exchange(self.settings.namespace), queue, body, headers, message_id
        )

    async def drain(self, *, timeout: float = 10.0, skip_delays: bool = True) -> Drained:
        """Run until nothing is left to do: every ready job run and settled, staged
        requeues published, and (with ``skip_delays``) every broker retry's wait jumped
        over on the virtual clock. DrainTimeout after ``timeout`` real seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        started = self.clock.now
        skipped = 0
        while True:
            await self._settle(deadline)
            if await drain_outbox(self.store, self.broker):
                continue
            due = self.broker.next_due() if skip_delays else None
            if due is not None:
                self.broker.advance_to(due)
                skipped += 1
                continue
            return Drained(skipped, self.clock.now - started, self._waiting())

    async def advance(self, seconds: float) -> None:
        """Move the virtual clock: delayed messages due by then are delivered."""
        self.broker.advance(seconds)
        await asyncio.sleep(0)

    async def _settle(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        quiet = 0
        while quiet < 3:
            if loop.time() > deadline:
                raise DrainTimeout(f"still busy: {self._busy_text()}")
            quiet = quiet + 1 if not self.broker.busy() else 0
            await asyncio.sleep(0.001)

    def _busy_text(self) -> str:
        """What is still in motion, for a DrainTimeout: running handlers, then queues."""
        running = self.worker.running_jobs()
        queued = [
            f"{name}: {depth[0]} ready"
            for name in self.broker.queue_names()
            if (depth := self.broker.depth(name)) is not None and depth[0]
        ]
        jobs = f"jobs still running: {', '.join(running)}" if running else "no job running"
        return "; ".join([jobs, *queued])

    def _waiting(self) -> dict[str, int]:
        waiting: dict[str, int] = {}
        for name in self.broker.queue_names():
            depth = self.broker.depth(name)
            if depth is not None and depth[0] and not name.endswith((".retained", ".recorder")):
                waiting[name] = depth[0]
        return waiting

    # -- what happened -----------------------------------------------------------------

    async def job(self, job_id: str) -> Job:
        """The job's row (state, generation, attempt, error, checkpoint...); JobNotFound."""
        return await self.admin.jobs.show(job_id)

    async def jobs(self, state: JobState | None = None, limit: int = 1000) -> list[JobSummary]:
        return await self.admin.jobs.list_jobs(state=state, limit=limit)

    async def dead_letters(
        self, job_id: str | None = None, *, status: DeadStatus | None = None
    ) -> list[DeadLetter]:
        """Dead-letter rows, oldest first: every death of one job, or of all jobs; with
        ``status``, only the rows in that status."""
        if job_id is not None:
            ids = [job_id]
        else:
            listed = await self.admin.list_dead(DeadFilter(status=status), limit=100_000)
            ids = list(dict.fromkeys(row.job_id for row in listed))
        deaths = [DeadLetter.from_row(r) for one in ids for r in await self.store.history(one)]
        wanted = [d for d in deaths if status is None or d.status == status]
        return sorted(wanted, key=lambda d: d.id)

    def retained(self) -> list[Published]:
        """The copies on ``<ns>.dead`` kept for anyone watching dead letters on the broker."""
        return self.broker.messages(retained_queue(self.settings.namespace))

    # -- what a person does --------------------------------------------------------------

    async def requeue(
        self, job_id: str, *, retries: int | None = None, mode: RequeueMode = RequeueMode.RESTART
    ) -> None:
        """Move a dead job back as a person would (JobStateConflict if it is not dead)."""
        await self.admin.requeue_one(job_id, retries=retries, mode=mode)

    async def recover(self, job_id: str, *, retries: int | None = None) -> None:
        """Move a dead job back to resume from its last checkpoint."""
        await self.requeue(job_id, retries=retries, mode=RequeueMode.RECOVER)

    async def suspend(self, job_id: str, reason: str | None = None) -> Job:
        return await self.admin.jobs.suspend(job_id, reason)

    async def cancel(self, job_id: str, reason: str | None = None) -> Job:
        return await self.admin.jobs.cancel(job_id, reason)

    async def resume(
        self, job_id: str, *, retries: int | None = None, mode: RequeueMode = RequeueMode.RECOVER
    ) -> Job:
        return await self.admin.jobs.resume(job_id, retries=retries, mode=mode)

    @contextlib.contextmanager
    def database_outage(self) -> Iterator[None]:
        """PostgreSQL is down meanwhile: every store call fails as it would then."""
        with self.store.outage():
            yield
