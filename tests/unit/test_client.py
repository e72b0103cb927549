"""Which queue a job goes to when the caller does not say, and when it may run."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine import JobContext, handler
from engine.client import Client, queue_for, seconds_to_wait
from engine.message import JobMessage
from engine.settings import Settings


@handler("client.routed", queue="emails")
async def routed(ctx: JobContext) -> None:
    pass


def test_the_handlers_queue_is_the_default() -> None:
    assert queue_for("client.routed", None) == "emails"


def test_a_given_queue_wins() -> None:
    assert queue_for("client.routed", "urgent") == "urgent"


def test_an_unknown_type_goes_to_default() -> None:
    assert queue_for("client.nobody_knows_this", None) == "default"


class RecordingBroker:
    """Enough of a Broker for Client.enqueue: records the delays it routes and the publishes."""

    def __init__(self) -> None:
        self.delays: list[int] = []
        self.published: list[tuple[str, str]] = []

    def knows_work_queue(self, queue: str) -> bool:
        return True

    async def delay_route(self, queue: str, delay_ms: int) -> tuple[str, str]:
        self.delays.append(delay_ms)
        return "", f"ns.delay.{queue}.{delay_ms}"

    async def publish(self, exchange: str, routing_key: str, *_: object) -> None:
        self.published.append((exchange, routing_key))


def recording_client() -> tuple[Client, RecordingBroker]:
    broker = RecordingBroker()
    settings = Settings(namespace="ns")  # type: ignore[call-arg]
    return Client(settings, broker=broker), broker  # type: ignore[arg-type]


async def test_a_requested_delay_is_kept_to_the_second() -> None:
    client, broker = recording_client()
    await client.enqueue("client.routed", None, delay=86_399)
    assert broker.delays == [86_399_000]
    assert broker.published == [("", "ns.delay.emails.86399000")]


async def test_a_retry_copy_still_goes_to_its_delay_tier() -> None:
    client, broker = recording_client()
    await client.publish_message(JobMessage(type="client.routed", payload=None), delay=7.34)
    assert broker.delays == [7_300]


async def test_a_run_at_time_is_never_early() -> None:
    client, broker = recording_client()
    at = datetime.now(UTC) + timedelta(seconds=90)
    await client.enqueue("client.routed", None, at=at)
    assert broker.delays == [90_000]


async def test_a_run_at_time_past_runs_the_job_now() -> None:
    client, broker = recording_client()
    await client.enqueue("client.routed", None, at=datetime.now(UTC) - timedelta(hours=1))
    assert broker.delays == []
    assert broker.published == [("ns.work", "emails")]


def test_a_run_at_time_in_another_zone_counts_from_the_same_instant() -> None:
    at = datetime.now(timezone(timedelta(hours=-5))) + timedelta(seconds=120)
    assert 115 < seconds_to_wait(None, at) <= 120


def test_no_delay_means_now() -> None:
    assert seconds_to_wait(None, None) == 0
    assert seconds_to_wait(0, None) == 0


@pytest.mark.parametrize(
    ("delay", "at", "message"),
    [
        (5, datetime.now(UTC), "give delay or at, not both"),
        (0, datetime.now(UTC), "give delay or at, not both"),
        (None, datetime(2030, 1, 1), "at must be timezone-aware"),
        (-1, None, "delay must be"),
        (math.nan, None, "delay must be"),
        (math.inf, None, "delay must be"),
    ],
)
async def test_a_bad_delay_or_run_at_time_is_refused(
    delay: float | None, at: datetime | None, message: str
) -> None:
    client, broker = recording_client()
    with pytest.raises(ValueError, match=message):
        await client.enqueue("client.routed", None, delay=delay, at=at)
    assert broker.published == []


def test_a_type_handled_elsewhere_goes_to_the_queue_the_registry_names() -> None:
    assert queue_for("client.elsewhere", None, {"client.elsewhere": "billing"}) == "billing"
    assert queue_for("client.routed", None, {"client.routed": "other"}) == "emails"  # local wins


async def test_many_jobs_go_each_to_its_types_queue() -> None:
    broker = RecordingBroker()
    settings = Settings(namespace="ns")  # type: ignore[call-arg]
    client = Client(settings, broker=broker, routes={"client.elsewhere": "billing"})  # type: ignore[arg-type]
    sent: list[tuple[str, str]] = []

    async def publish_many(
        outgoing: list[tuple[str, str, bytes, object, str]], **_: object
    ) -> None:
        sent.extend((exchange, key) for exchange, key, *_ in outgoing)

    broker.publish_many = publish_many  # type: ignore[attr-defined]
    jobs = [("client.routed", 1), ("client.elsewhere", 2), ("client.nobody", 3)]
    await client.enqueue_many(jobs)
    assert [key for _, key in sent] == ["emails", "billing", "default"]


async def test_a_job_id_the_wire_format_refuses_is_refused_at_enqueue() -> None:
    client, broker = recording_client()
    for bad in ("x" * 256, "nul\x00inside", "é" * 200):  # 400 bytes of UTF-8
        with pytest.raises(ValueError, match="job id"):
            await client.enqueue("client.routed", None, job_id=bad)
    assert broker.published == []
    await client.enqueue("client.routed", None, job_id="é" * 127)  # 254 bytes: fine


def test_the_message_says_whether_a_final_failure_suspends_else_the_handler_does() -> None:
    from engine.message import JobMessage
    from engine.registry import Handler
    from engine.retry import RetryPolicy

    async def work(ctx: object) -> None:
        return None

    suspending = Handler("t", work, RetryPolicy(), suspend_on_failure=True)
    assert suspending.suspends(JobMessage(type="t", payload=None))
    assert not suspending.suspends(JobMessage(type="t", payload=None, suspend_on_failure=False))
    assert Handler("t", work, RetryPolicy()).suspends(
        JobMessage(type="t", payload=None, suspend_on_failure=True)
    )
