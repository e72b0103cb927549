"""Jobs of a paused type wait in a queue of their own until a person resumes the type.

A worker that takes a job whose type is paused publishes it, body untouched, to
``<ns>.parked.<type>`` (confirmed) and then acks it: the job keeps its place in RabbitMQ
and holds no worker slot, and the other types of its queue keep running. Resuming the
type moves every parked job back to the work queue it came from, again with a confirmed
publish before each ack, so a crash in between leaves a job in one queue or, at worst,
in both (the job-state claim drops the second copy).
"""

from __future__ import annotations

import asyncio
import logging

from engine.amqp.consumer import Delivery
from engine.amqp.port import BrokerPort, Outgoing
from engine.amqp.topology import parked_queue, work_exchange
from engine.message import H_PARKED_FROM, check_queue_name

log = logging.getLogger("lazarus.parking")

UNPARK_BATCH = 500


async def park(broker: BrokerPort, job_type: str, queue: str, body: bytes, job_id: str) -> None:
    """Publish a job of a paused type to its parked queue; the caller acks the original after."""
    name = await broker.declare_parked_queue(job_type)
    await broker.publish("", name, body, {H_PARKED_FROM: queue}, job_id)


async def unpark(broker: BrokerPort, job_type: str, *, batch: int = UNPARK_BATCH) -> int:
    """Move every parked job of ``job_type`` back to its work queue; return how many moved.

    Batches of ``batch``: taken unacked, published with pipelined confirms, then acked.
    If a publish fails, the batch is not acked and goes back to the parked queue.

    Only the jobs parked when it begins are moved. A worker that has not seen the resume
    yet parks a moved job again; that worker moves it back itself once it sees the
    resume, whereas moving it here too would pass it back and forth until then.
    """
    name = parked_queue(broker.ns, job_type)
    async with broker.reader() as reader:
        depth = await reader.depth(name)
        if depth is None:
            return 0
        left = depth[0]
        moved = 0
        while left > 0:
            taken: list[Delivery] = []
            while len(taken) < min(batch, left):
                delivery = await reader.get(name)
                if delivery is None:
                    break
                taken.append(delivery)
            if not taken:
                return moved
            outgoing = [await _route_back(broker, d) for d in taken]
            await broker.publish_many(outgoing)
            await taken[-1].ack(multiple=True)  # the reader's channel: only what it took
            moved += len(taken)
            left -= len(taken)
        return moved


async def parked_count(broker: BrokerPort, job_type: str) -> int:
    """Jobs of ``job_type`` waiting in its parked queue (0 if it has none)."""
    depth = await broker.queue_depth(parked_queue(broker.ns, job_type))
    return depth[0] if depth else 0


async def _route_back(broker: BrokerPort, message: Delivery) -> Outgoing:
    origin = message.headers.get(H_PARKED_FROM)
    try:
        queue = check_queue_name(origin if isinstance(origin, str) else "")
    except ValueError:
        log.warning("parked message %s names no queue; sending it to 'default'", message.message_id)
        queue = "default"
    await broker.ensure_work_queue(queue)
    return (work_exchange(broker.ns), queue, message.body, None, message.message_id)


class Parker:
    """A worker's side of type pauses: which types it parks, and moving them back on resume.

    A job can be parked just after its type was resumed (the worker saw the pause, then
    the resume landed while the copy was on its way): :meth:`park` notices and moves it
    back, so no parked job waits for a resume that already happened.
    """

    def __init__(self, broker: BrokerPort, *, retry_after: float = 5.0) -> None:
        self.broker = broker
        self.retry_after = retry_after
        self.paused: frozenset[str] = frozenset()
        self._unparking: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._stopped = False

    def holds(self, job_type: str) -> bool:
        return job_type in self.paused

    def update(self, paused: frozenset[str]) -> None:
        """Take the types paused now; move back the jobs of every type resumed since."""
        resumed = self.paused - paused
        self.paused = paused
        for job_type in resumed:
            log.info("job type %s resumed: moving its parked jobs back", job_type)
            self.request_unpark(job_type)

    async def park(self, job_type: str, queue: str, body: bytes, job_id: str) -> None:
        await park(self.broker, job_type, queue, body, job_id)
        if job_type not in self.paused:
            self.request_unpark(job_type)

    def request_unpark(self, job_type: str) -> None:
        if self._stopped:  # the jobs stay parked; any other worker or a resume moves them
            return
        task = self._unparking.get(job_type)
        if task is not None and not task.done():
            self._again.add(job_type)  # the running pass may have looked before this park
            return
        self._unparking[job_type] = asyncio.create_task(
            self._unpark(job_type), name=f"lazarus-unpark-{job_type}"
        )

    async def stop(self) -> None:
        self._stopped = True
        tasks = list(self._unparking.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._unparking.clear()

    async def _unpark(self, job_type: str) -> None:
        while True:
            self._again.discard(job_type)
            try:
                moved = await unpark(self.broker, job_type)
                if moved:
                    log.info("moved %d parked %s jobs back to their queues", moved, job_type)
            except Exception as exc:  # broker away: the jobs stay parked, try again
                log.warning(
                    "could not move parked %s jobs back, retrying in %.0f s: %r",
                    job_type,
                    self.retry_after,
                    exc,
                )
                await asyncio.sleep(self.retry_after)
                self._again.add(job_type)
            if job_type not in self._again or job_type in self.paused:
                return
