"""Retry decisions on the in-memory broker: in-process backoff, broker retries through
delay queues, the delays chosen, and the reasons a job dies.

Each test pins an engine rule (named in its docstring); the delay queues' TTL timing on
RabbitMQ stays pinned by tests/integration/test_retries.py and tests/contract.
"""

from __future__ import annotations

import itertools
import time

import orjson
import pytest

from engine import JobContext, Permanent, RetryPolicy, Transient
from engine.amqp.topology import delay_queue, delay_tier_ms
from engine.message import (
    H_ATTEMPTS,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_QUEUE,
    H_REASON,
    H_TRACEBACK,
    decode,
)
from engine.states import JobState
from engine.testing import Lazarus
from engine.worker.consume import Worker


class ExpectedFailure(Exception):
    pass


IN_PROCESS = RetryPolicy(attempts=4, backoff=0.02, backoff_max=1.0, jitter=0, max_retries=0)
BROKER = RetryPolicy(attempts=1, max_retries=5, retry_delay=0.3, retry_factor=2, retry_jitter=0)
EXHAUSTING = RetryPolicy(attempts=2, backoff=0.01, max_retries=2, retry_delay=0.1, retry_jitter=0)


async def test_transient_failures_are_retried_in_process_with_backoff(lz: Lazarus) -> None:
    """Rule: a Transient error is retried in-process up to ``attempts`` tries, on the same
    attempt, each wait doubling the last (tenacity's exponential backoff)."""
    runs: list[tuple[int, int, float]] = []

    @lz.handler("flaky_in_process", policy=IN_PROCESS)
    async def flaky(ctx: JobContext) -> None:
        runs.append((ctx.attempt, ctx.try_number, time.monotonic()))
        if len(runs) <= 3:
            raise Transient("flaky dependency")

    job_id = await lz.enqueue("flaky_in_process")
    drained = await lz.drain()
    assert [(a, t) for a, t, _ in runs] == [(0, 1), (0, 2), (0, 3), (0, 4)]
    gaps = [b[2] - a[2] for a, b in itertools.pairwise(runs)]
    for gap, least in zip(gaps, [0.02, 0.04, 0.08], strict=True):
        assert gap >= least - 0.005, (gaps, "shorter than the backoff")
    assert drained.delays_skipped == 0  # no broker retry
    assert (await lz.job(job_id)).state == JobState.SUCCEEDED


async def test_transient_failures_beyond_the_in_process_attempts_go_to_the_broker(
    lz: Lazarus,
) -> None:
    """Rule: spent in-process tries count as one broker-level run; with max_retries=0 the
    job then dies with "retries exhausted"."""
    runs: list[int] = []

    @lz.handler("always_transient", policy=IN_PROCESS)
    async def always(ctx: JobContext) -> None:
        runs.append(ctx.try_number)
        raise Transient("still down")

    job_id = await lz.enqueue("always_transient")
    await lz.drain()
    [dead] = lz.retained()
    assert dead.message_id == job_id
    assert dead.headers[H_REASON] == "retries exhausted"
    assert runs == [1, 2, 3, 4]


async def test_broker_retries_run_again_with_growing_attempt_and_delay(lz: Lazarus) -> None:
    """Rule: each broker retry increments the attempt and waits retry_delay *
    retry_factor**attempt (no jitter here), through the delay tier of that wait."""
    runs: list[tuple[int, int, float]] = []

    @lz.handler("flaky_at_broker", policy=BROKER)
    async def flaky(ctx: JobContext) -> None:
        runs.append((ctx.attempt, ctx.try_number, lz.clock.now))
        if ctx.attempt < 3:
            raise RuntimeError(f"failing run {ctx.attempt}")

    job_id = await lz.enqueue("flaky_at_broker")
    drained = await lz.drain()
    assert [(a, t) for a, t, _ in runs] == [(0, 1), (1, 1), (2, 1), (3, 1)]
    gaps = [b[2] - a[2] for a, b in itertools.pairwise(runs)]
    assert gaps == pytest.approx([0.3, 0.6, 1.2], abs=0.002)
    assert drained.delays_skipped == 3
    ns = lz.settings.namespace
    for attempt in range(3):
        tier = delay_queue(ns, "default", delay_tier_ms(BROKER.broker_delay(attempt)))
        assert tier in lz.broker.queue_names()
    assert (await lz.job(job_id)).state == JobState.SUCCEEDED


async def test_attempt_count_survives_a_worker_restart(lz: Lazarus) -> None:
    """Rule: the attempt travels in the retried message, not in the worker: a retry
    waiting in a delay queue runs as attempt 1 on another worker."""
    slow = RetryPolicy(attempts=1, max_retries=3, retry_delay=2.0, retry_jitter=0)
    attempts: list[int] = []

    @lz.handler("flaky_slow_retry", policy=slow)
    async def flaky(ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 1:
            raise RuntimeError("once")

    first = lz.worker
    assert first is not None
    job_id = await lz.enqueue("flaky_slow_retry")
    await lz.drain(skip_delays=False)
    assert first.processed == 1  # the delivery counts once its retry is confirmed
    await first.stop(grace=0)
    waiting_in = delay_queue(lz.settings.namespace, "default", delay_tier_ms(slow.broker_delay(0)))
    assert len(lz.broker.messages(waiting_in)) == 1
    assert attempts == [0]

    second = Worker(lz.settings, ["default"], worker_id="second", store=lz.store, broker=lz.broker)
    await second.start()
    try:
        await lz.drain()
    finally:
        await second.stop(grace=0)
    assert attempts == [0, 1]
    assert (await lz.job(job_id)).state == JobState.SUCCEEDED


async def test_short_delay_is_not_held_back_by_a_longer_one_enqueued_earlier(
    lz: Lazarus,
) -> None:
    """Rule: a delayed enqueue goes to the delay tier of its own wait, so a 1 s job is
    not queued behind a 30 s one."""
    ran: list[str] = []

    @lz.handler("on_time")
    async def on_time(ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    late = await lz.enqueue("on_time", delay=30)
    early = await lz.enqueue("on_time", delay=1)
    await lz.drain(skip_delays=False)
    assert ran == []
    await lz.advance(1.0)
    await lz.drain(skip_delays=False)
    assert ran == [early]
    await lz.advance(29.0)
    await lz.drain(skip_delays=False)
    assert ran == [early, late]


async def test_exhausted_retries_leave_one_dead_letter_with_the_error(lz: Lazarus) -> None:
    """Rule: a non-Transient error gets no in-process tries and 1 + max_retries broker
    runs; its dead letter carries the last run's body and error, reason "retries
    exhausted", and one copy is retained."""
    runs: list[tuple[int, int]] = []

    @lz.handler("always_fails", policy=EXHAUSTING)
    async def always_fails(ctx: JobContext) -> None:
        runs.append((ctx.attempt, ctx.try_number))
        raise ExpectedFailure(f"broken for good, run {ctx.attempt}")

    job_id = await lz.enqueue("always_fails", {"x": 1})
    await lz.drain()
    [dead] = lz.retained()
    headers = dead.headers
    assert dead.message_id == job_id
    assert headers[H_REASON] == "retries exhausted"
    assert headers[H_ERROR_TYPE] == f"{__name__}.ExpectedFailure"
    assert headers[H_ERROR_MESSAGE] == "broken for good, run 2"
    traceback = str(headers[H_TRACEBACK])
    assert "Traceback (most recent call last)" in traceback
    assert "in always_fails" in traceback and "ExpectedFailure: broken for good" in traceback
    assert headers[H_QUEUE] == "default"
    assert headers[H_ATTEMPTS] == 3
    assert runs == [(0, 1), (1, 1), (2, 1)]
    message = decode(dead.body)
    assert (message.id, message.type, message.attempt) == (job_id, "always_fails", 2)
    [row] = await lz.dead_letters(job_id)
    assert (row.reason, row.error_type) == ("retries exhausted", f"{__name__}.ExpectedFailure")


async def test_permanent_error_goes_to_the_dead_letters_without_any_retry(lz: Lazarus) -> None:
    """Rule: Permanent skips every retry, in-process and broker, whatever max_retries."""
    runs: list[int] = []

    @lz.handler("permanent", policy=RetryPolicy(max_retries=5))
    async def rejects_input(ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        raise Permanent(f"cannot handle {ctx.payload!r}")

    job_id = await lz.enqueue("permanent", {"order": 7})
    drained = await lz.drain()
    [dead] = lz.retained()
    headers = dead.headers
    assert dead.message_id == job_id
    assert headers[H_REASON] == "permanent error"
    assert headers[H_ERROR_TYPE] == "engine.errors.Permanent"
    assert headers[H_ERROR_MESSAGE] == "cannot handle {'order': 7}"
    assert "in rejects_input" in str(headers[H_TRACEBACK])
    assert headers[H_ATTEMPTS] == 1
    assert runs == [0]
    assert drained.delays_skipped == 0


async def test_message_max_retries_overrides_the_handler_policy(lz: Lazarus) -> None:
    """Rule: max_retries given at enqueue wins over the handler's policy."""
    runs: list[int] = []

    @lz.handler("always_fails", policy=EXHAUSTING)
    async def always_fails(ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        raise ExpectedFailure("no")

    job_id = await lz.enqueue("always_fails", max_retries=0)
    await lz.drain()
    [dead] = lz.retained()
    assert dead.message_id == job_id
    assert dead.headers[H_REASON] == "retries exhausted"
    assert dead.headers[H_ATTEMPTS] == 1
    assert runs == [0]


@pytest.mark.lazarus(queues=["emails"])
async def test_a_body_without_a_queue_retries_on_the_queue_it_came_from(lz: Lazarus) -> None:
    """Rule: a message whose body names no queue is retried on the queue it was
    delivered from (its routing key), through that queue's delay tier."""
    runs: list[int] = []

    @lz.handler("flaky_at_broker", queue="emails", policy=BROKER)
    async def flaky(ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        if ctx.attempt < 1:
            raise RuntimeError("once")

    body = orjson.dumps({"type": "flaky_at_broker", "id": "no-queue-field", "payload": {}})
    await lz.publish_raw(body, queue="emails")
    await lz.drain()
    assert runs == [0, 1]
    tier = delay_queue(lz.settings.namespace, "emails", delay_tier_ms(BROKER.broker_delay(0)))
    assert tier in lz.broker.queue_names()
    elsewhere = delay_queue(lz.settings.namespace, "default", delay_tier_ms(0.3))
    assert elsewhere not in lz.broker.queue_names()
