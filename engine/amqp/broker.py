"""The one place that talks AMQP: a robust connection, confirmed publishes, consumers.

Every publish is persistent, ``mandatory`` and confirmed: :meth:`Broker.publish`
returns only once RabbitMQ has taken responsibility for the message, and raises
:class:`PublishFailed` if it was returned as unroutable, nacked or lost with the
channel. Callers ack an original only after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractRobustConnection,
    DeliveryMode,
)
from aio_pika.connection import make_url

from engine import metrics
from engine.amqp.channels import AmqpConsumers, AmqpReader
from engine.amqp.consumer import LazarusConnection
from engine.amqp.port import Outgoing
from engine.amqp.topology import Topology, passive_queue
from engine.errors import PublishFailed, ServiceUnavailable
from engine.message import CONTENT_TYPE, MAX_ID_BYTES, check_queue_name
from engine.settings import Settings

log = logging.getLogger("lazarus.broker")

# Seconds between reconnect attempts after RabbitMQ drops the connection.
RECONNECT_INTERVAL = 1.0
PERSISTENT = int(DeliveryMode.PERSISTENT)


def fitting_message_id(message_id: str | None) -> str | None:
    """``message_id`` if it fits an AMQP short string (255 bytes), else a digest of it.

    Job ids are bounded to fit (engine.message); this keeps a publish possible for an id
    stored before that bound, whose copies still share one message id.
    """
    if message_id is None:
        return None
    raw = message_id.encode("utf-8", errors="surrogatepass")
    if len(raw) <= MAX_ID_BYTES:
        return message_id
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


def amqp_properties(
    headers: Mapping[str, Any] | None, message_id: str | None
) -> aiormq.spec.Basic.Properties:
    """Properties of a persistent job message.

    Built directly: ``aio_pika.Message`` checks a lock on every attribute it sets, a cost
    the profiles showed on every publish (bench/README.md).
    """
    return aiormq.spec.Basic.Properties(
        content_type=CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        headers=dict(headers) if headers else None,
        message_id=fitting_message_id(message_id),
    )


class Broker:
    """A robust connection with one confirm channel for publishing."""

    def __init__(self, settings: Settings, *, name: str = "lazarus") -> None:
        self.settings = settings
        self.ns = settings.namespace
        self.topology = Topology(settings.namespace, settings.queue_type)
        self._name = name
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None

    async def connect(self) -> None:
        """Connect and declare the namespace's exchanges.

        Raises ServiceUnavailable naming RabbitMQ's host:port if it refuses, or does not
        finish the handshake within LAZARUS_CONNECT_TIMEOUT. Cancelling it (a worker told
        to stop while it starts) leaves nothing running.
        """
        self._connection = await self._open()
        self._connection.reconnect_callbacks.add(_count_reconnect)
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        await self.topology.declare_base(self._channel)

    async def _open(self) -> AbstractRobustConnection:
        # Built here rather than by aio_pika.connect_robust, which loses the connection when
        # the first attempt fails or is cancelled: its reconnect task would keep dialling.
        connection = LazarusConnection(
            make_url(self.settings.amqp_dsn, reconnect_interval=RECONNECT_INTERVAL),
            client_properties={"connection_name": self._name},
        )
        timeout = self.settings.connect_timeout
        try:
            await connection.connect(timeout=timeout)  # bounds the whole AMQP handshake
        except BaseException as exc:
            await connection.close()
            if isinstance(exc, TimeoutError):
                raise ServiceUnavailable(
                    f"RabbitMQ at {_where(self.settings.amqp_dsn)} did not answer within "
                    f"{timeout:g} s (LAZARUS_CONNECT_TIMEOUT)"
                ) from None
            if isinstance(exc, OSError | aiormq.exceptions.AMQPError):
                raise ServiceUnavailable(
                    f"RabbitMQ at {_where(self.settings.amqp_dsn)}: {exc}"
                ) from None
            raise
        return connection

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("Broker.connect() was not called")
        return self._connection

    @property
    def channel(self) -> AbstractChannel:
        if self._channel is None:
            raise RuntimeError("Broker.connect() was not called")
        return self._channel

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def __aenter__(self) -> Broker:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def declare_work_queue(self, queue: str) -> None:
        """Declare ``queue``; PublishFailed if it is no valid queue name, as a requeue of a
        dead letter whose queue a forged header gave can ask (see engine.deadletters.records)."""
        try:
            check_queue_name(queue)
        except ValueError as exc:
            raise PublishFailed(f"cannot route a job to it: {exc}") from None
        await self.topology.declare_work_queue(self.channel, queue)

    async def ensure_work_queue(self, queue: str) -> None:
        """Declare ``queue`` unless this process has: a publish to it by routing key (or a
        delay queue expiring into it) must find it, or RabbitMQ drops the message."""
        if not self.topology.knows_work_queue(queue):
            await self.declare_work_queue(queue)

    def knows_work_queue(self, queue: str) -> bool:
        """Whether this process declared work queue ``queue`` (so it exists)."""
        return self.topology.knows_work_queue(queue)

    async def declare_parked_queue(self, job_type: str) -> str:
        return await self.topology.declare_parked_queue(self.channel, job_type)

    async def delay_route(self, queue: str, delay_ms: int) -> tuple[str, str]:
        """(exchange, routing key) that delivers to ``queue`` after ``delay_ms``.

        The delay queue hands its messages to ``queue`` by routing key when they expire,
        and RabbitMQ drops what no queue takes: so ``queue`` is declared first.
        """
        await self.ensure_work_queue(queue)
        name = await self.topology.ensure_delay_queue(self.channel, queue, delay_ms)
        return "", name

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> None:
        """Publish one persistent message and wait for the broker's confirm.

        Raises PublishFailed for any failure, one of the message's own too (a value pamqp
        cannot encode raises TypeError or ValueError): the caller keeps the original
        unacked and hands it back after a pause, as for a refused publish.
        """
        try:
            if self.channel.is_closed:
                raise aiormq.exceptions.ChannelInvalidStateError("publish channel closed")
            channel = await self.channel.get_underlay_channel()
            await channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=amqp_properties(headers, message_id),
                mandatory=True,
            )
        except aiormq.exceptions.PublishError:
            raise PublishFailed(
                f"no queue bound to exchange {exchange!r} with routing key {routing_key!r}: "
                "the broker returned the message unroutable"
            ) from None
        except (
            aiormq.exceptions.AMQPError,
            aiormq.exceptions.ChannelInvalidStateError,
            ConnectionError,
        ) as exc:
            raise PublishFailed(
                f"publish to {exchange!r}/{routing_key!r} not confirmed: {exc!r}"
            ) from None
        except Exception as exc:  # the message itself cannot be sent as it is
            log.error("publish to %r/%r failed: %r", exchange, routing_key, exc, exc_info=exc)
            raise PublishFailed(
                f"publish to {exchange!r}/{routing_key!r} failed: {exc!r}"
            ) from None

    async def publish_many(self, outgoing: Iterable[Outgoing], *, in_flight: int = 1000) -> int:
        """Publish with up to ``in_flight`` unconfirmed at once; return how many were confirmed.

        Raises PublishFailed on the first failure, after the in-flight ones settle:
        callers must treat every message of the batch as possibly unsent.
        """
        window = asyncio.Semaphore(in_flight)
        failures: list[Exception] = []

        async def one(item: Outgoing) -> None:
            try:
                await self.publish(*item)
            except Exception as exc:  # kept, not lost with a task nobody awaits any more
                failures.append(exc)
            finally:
                window.release()

        # Only unconfirmed publishes are held: memory stays flat however long ``outgoing`` is.
        unconfirmed: set[asyncio.Task[None]] = set()
        started = 0
        for item in outgoing:
            await window.acquire()
            if failures:
                window.release()
                break
            task = asyncio.create_task(one(item))
            unconfirmed.add(task)
            task.add_done_callback(unconfirmed.discard)
            started += 1
        await asyncio.gather(*unconfirmed)
        if failures:
            raise failures[0]
        return started

    async def queue_depth(self, name: str) -> tuple[int, int] | None:
        """(messages ready, consumers) of a queue, or None if it does not exist.

        A passive declare of a missing queue closes its channel, so it gets its own.
        """
        channel = await self.connection.channel()
        try:
            queue = await passive_queue(channel, name)
            if queue is None or queue.declaration_result is None:
                return None
            result = queue.declaration_result
            return int(result.message_count or 0), int(result.consumer_count or 0)
        finally:
            if not channel.is_closed:
                await channel.close()

    async def consumers(self, *, prefetch: int) -> AmqpConsumers:
        """A consumer channel of its own, with ``prefetch`` unacked deliveries per consumer."""
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        return AmqpConsumers(channel, self.topology, prefetch)

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[AmqpReader]:
        """A ``basic.get`` channel of its own; what it leaves unacked goes back on exit."""
        reader = AmqpReader(self.connection)
        await reader.open()
        try:
            yield reader
        finally:
            await reader.close()


def _count_reconnect(*_: object) -> None:
    metrics.RECONNECTS.inc()
    log.warning("reconnected to RabbitMQ")


def _where(dsn: str) -> str:
    """host:port of an AMQP URL, without its user or password."""
    parts = urlsplit(dsn)
    default = 5671 if parts.scheme == "amqps" else 5672
    return f"{parts.hostname or 'localhost'}:{parts.port or default}"
