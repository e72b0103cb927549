"""The broker port: what the engine asks of a broker, and nothing more.

Two implementations meet it: :class:`engine.amqp.broker.Broker` on RabbitMQ and
:class:`engine.memory.broker.InMemoryBroker`, held to the same observable rules by
tests/contract/test_broker.py. Deliveries stay the concrete
:class:`engine.amqp.consumer.Delivery` on both, settled through an :class:`AckChannel`,
so acks in batches (engine.amqp.acks), the settler and the recorder run unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from engine.amqp.consumer import AckChannel, Delivery, DeliveryCallback

__all__ = [
    "AckChannel",
    "BrokerPort",
    "Consumers",
    "Delivery",
    "DeliveryCallback",
    "Outgoing",
    "QueueReader",
]

Outgoing = tuple[str, str, bytes, Mapping[str, Any] | None, str | None]
"""(exchange, routing key, body, headers, message id) of one publish."""


class Consumers(Protocol):
    """Consumers on one channel: one ascending tag sequence across all its queues (a
    multiple ack covers every earlier delivery on it), a prefetch per consumer."""

    async def consume(self, queue: str, callback: DeliveryCallback) -> str:
        """Consume the queue named ``queue`` (a full name, as engine.amqp.topology gives);
        ``callback`` gets each delivery in a task of its own. Returns the consumer tag;
        TopologyError if the queue does not exist."""
        ...

    async def cancel(self, tag: str) -> None:
        """No new deliveries for consumer ``tag``; the unacked ones stay to be settled."""
        ...

    async def sync(self) -> None:
        """Return once the broker has processed the acks and nacks sent before."""
        ...

    async def close(self) -> None:
        """Close the channel: every unacked delivery goes back to its queue, redelivered."""
        ...


class QueueReader(Protocol):
    """A ``basic.get`` channel of its own: a multiple ack on it covers only what it took,
    and whatever it leaves unacked goes back when it is closed."""

    async def depth(self, queue: str) -> tuple[int, int] | None:
        """(messages ready, consumers) of ``queue``, or None if it does not exist."""
        ...

    async def get(self, queue: str) -> Delivery | None:
        """The head of ``queue``, unacked, or None if it is empty; TopologyError if the
        queue does not exist."""
        ...


class BrokerPort(Protocol):
    """A namespace's exchanges and queues: confirmed publishes, consumers and readers.

    Every publish is ``mandatory`` and confirmed: it returns once the broker took the
    message, and raises PublishFailed if no queue took it, it was refused, or the
    confirm was lost.
    """

    @property
    def ns(self) -> str:
        """The namespace every exchange and queue name starts with."""
        ...

    async def connect(self) -> None:
        """Connect and declare the namespace's exchanges and dead-letter queues;
        ServiceUnavailable if the broker does not answer."""
        ...

    async def close(self) -> None: ...

    async def declare_work_queue(self, queue: str) -> None:
        """Declare work queue ``queue``; PublishFailed if it is no valid queue name."""
        ...

    async def ensure_work_queue(self, queue: str) -> None:
        """Declare work queue ``queue`` unless this process already has."""
        ...

    def knows_work_queue(self, queue: str) -> bool:
        """Whether this process declared work queue ``queue``."""
        ...

    async def declare_parked_queue(self, job_type: str) -> str:
        """Declare the parked queue of ``job_type``; return its name."""
        ...

    async def delay_route(self, queue: str, delay_ms: int) -> tuple[str, str]:
        """(exchange, routing key) that delivers to work queue ``queue`` after ``delay_ms``."""
        ...

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> None:
        """Publish one persistent message and wait for its confirm; PublishFailed if not."""
        ...

    async def publish_many(self, outgoing: Iterable[Outgoing], *, in_flight: int = 1000) -> int:
        """Publish with up to ``in_flight`` unconfirmed; return how many were confirmed.
        PublishFailed on the first failure: any of the batch may be unsent."""
        ...

    async def queue_depth(self, name: str) -> tuple[int, int] | None:
        """(messages ready, consumers) of queue ``name``, or None if it does not exist."""
        ...

    async def consumers(self, *, prefetch: int) -> Consumers:
        """A consumer channel of its own, ``prefetch`` unacked deliveries per consumer."""
        ...

    def reader(self) -> AbstractAsyncContextManager[QueueReader]:
        """A reader on a channel of its own, closed (unacked messages back) on exit."""
        ...
