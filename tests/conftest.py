"""Fixtures: every test gets its own namespace (queues, exchanges, schema) and cleans it up.

Services come from LAZARUS_TEST_AMQP_URL / LAZARUS_TEST_DATABASE_URL, defaulting to
the local RabbitMQ and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractIncomingMessage

from engine.amqp.topology import (
    dead_letter_queues,
    namespace_exchanges,
    retained_queue,
    work_exchange,
    work_queue,
)
from engine.settings import QueueType, Settings
from engine.worker.consume import Worker

AMQP_URL = os.environ.get("LAZARUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
DATABASE_URL = os.environ.get(
    "LAZARUS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
RUN_PREFIX = f"lzt_{uuid.uuid4().hex[:6]}"


def unique_namespace() -> str:
    return f"{RUN_PREFIX}_{uuid.uuid4().hex[:8]}"


def make_settings(
    namespace: str, queue_type: QueueType = QueueType.QUORUM, **extra: object
) -> Settings:
    # A job of a type no handler here knows dies at once in tests (no rolling deploy to
    # wait for), unless a test asks for a grace period.
    extra.setdefault("unknown_type_grace", 0)
    return Settings(
        amqp_url=AMQP_URL,  # type: ignore[arg-type]
        database_url=DATABASE_URL,  # type: ignore[arg-type]
        namespace=namespace,
        queue_type=queue_type,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(params=[QueueType.QUORUM, QueueType.CLASSIC], ids=["quorum", "classic"])
def queue_type(request: pytest.FixtureRequest) -> QueueType:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def settings(queue_type: QueueType) -> AsyncIterator[Settings]:
    """Settings of a fresh namespace; its exchanges and queues are deleted afterwards."""
    config = make_settings(unique_namespace(), queue_type)
    yield config
    await delete_namespace(config.namespace, ["default"])


@pytest.fixture
async def quorum_settings() -> AsyncIterator[Settings]:
    config = make_settings(unique_namespace(), QueueType.QUORUM)
    yield config
    await delete_namespace(config.namespace, ["default"])


async def delete_namespace(ns: str, queues: list[str]) -> None:
    """Delete the namespace's work and dead-letter queues and its exchanges."""
    names = [work_queue(ns, q) for q in queues] + dead_letter_queues(ns)
    await delete_queues(names, namespace_exchanges(ns))


@pytest.fixture(scope="session", autouse=True)
def sweep_leftover_queues() -> Iterator[None]:
    """Delete any queue of this run that a test left behind (delay queues, crashed tests)."""
    yield
    try:
        listed = subprocess.run(
            ["rabbitmqctl", "list_queues", "name", "--quiet", "--no-table-headers"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return
    leftovers = [name for name in listed if name.startswith(RUN_PREFIX)]
    if leftovers:
        asyncio.run(delete_queues(leftovers))


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Poll until ``predicate`` holds; fail the test naming ``what`` after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def start_worker() -> AsyncIterator[Callable[..., Awaitable[Worker]]]:
    """Factory: start an in-process Worker; every one started is stopped afterwards."""
    started: list[Worker] = []

    async def start(config: Settings, queues: list[str] | None = None, **kwargs: object) -> Worker:
        worker = Worker(config, queues or ["default"], **kwargs)  # type: ignore[arg-type]
        started.append(worker)
        await worker.start()
        return worker

    yield start
    for worker in started:
        await worker.stop(grace=1)


@pytest.fixture
async def extra_queues() -> AsyncIterator[list[str]]:
    """Names of queues (delay queues, extra work queues) a test created; deleted afterwards."""
    names: list[str] = []
    yield names
    if names:
        await delete_queues(names)


async def delete_queues(names: list[str], exchanges: list[str] | None = None) -> None:
    """Delete queues (then exchanges), ignoring the ones that do not exist.

    A failed delete closes its channel, so each gets a channel of its own.
    """
    connection = await aio_pika.connect(AMQP_URL)
    try:
        for name, kind in [(n, "queue") for n in names] + [
            (e, "exchange") for e in exchanges or []
        ]:
            channel = await connection.channel()
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                if kind == "queue":
                    await channel.queue_delete(name)
                else:
                    await channel.exchange_delete(name)
            if not channel.is_closed:
                await channel.close()
    finally:
        await connection.close()


async def publish_raw(
    config: Settings, body: bytes, *, routing_key: str = "default", message_id: str | None = None
) -> None:
    """Publish bytes to the work exchange with a plain aio-pika client, as another service would."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(work_exchange(config.namespace))
        await exchange.publish(
            aio_pika.Message(
                body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message_id
            ),
            routing_key=routing_key,
        )


async def take_dead_letters(
    config: Settings, count: int, timeout: float = 20.0
) -> list[AbstractIncomingMessage]:
    """Take ``count`` messages from the namespace's retained dead-letter queue (fail if fewer)."""
    taken: list[AbstractIncomingMessage] = []
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(retained_queue(config.namespace), ensure=False)

        async def got_all() -> bool:
            while len(taken) < count:
                message = await queue.get(no_ack=True, fail=False)
                if message is None:
                    return False
                taken.append(message)
            return True

        await wait_for(got_all, timeout=timeout, what=f"{count} dead letters")
    return taken


async def queue_depth(name: str) -> int | None:
    """Ready messages in a queue, or None if it does not exist."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        assert queue.declaration_result is not None
        return int(queue.declaration_result.message_count or 0)
