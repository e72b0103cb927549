"""Retries against the real broker: broker-level delays, dead letters.

The retry decisions (in-process backoff, the delays chosen, permanent errors, max_retries
at enqueue) are pinned on the doubles in tests/memory/worker/test_retries.py; what stays
here needs RabbitMQ's delay queues or goes the whole way.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable

import orjson
import pytest

from engine import Client, JobContext, RetryPolicy, Worker, handler
from engine.amqp.topology import delay_queue, delay_tier_ms, retained_queue, work_queue
from engine.message import (
    H_ATTEMPTS,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_QUEUE,
    H_REASON,
    H_TRACEBACK,
    decode,
)
from engine.settings import Settings
from tests.conftest import publish_raw, queue_depth, take_dead_letters, wait_for

pytestmark = pytest.mark.timeout(30)

StartWorker = Callable[..., Awaitable[Worker]]

# job id -> one (attempt, try number, monotonic time) per call of a handler
calls: dict[str, list[tuple[int, int, float]]] = {}
succeeded: set[str] = set()


def record(ctx: JobContext) -> int:
    """Note this call; return how many calls of this job came before it."""
    runs = calls.setdefault(ctx.job_id, [])
    runs.append((ctx.attempt, ctx.try_number, time.monotonic()))
    return len(runs) - 1


BROKER = RetryPolicy(attempts=1, max_retries=5, retry_delay=0.3, retry_factor=2, retry_jitter=0)


@handler("retries.flaky_at_broker", policy=BROKER)
async def flaky_at_broker(ctx: JobContext) -> None:
    record(ctx)
    if ctx.attempt < ctx.payload["failures"]:
        raise RuntimeError(f"failing run {ctx.attempt}")
    succeeded.add(ctx.job_id)


SLOW = RetryPolicy(attempts=1, max_retries=3, retry_delay=2.0, retry_jitter=0)


@handler("retries.flaky_slow_retry", policy=SLOW)
async def flaky_slow_retry(ctx: JobContext) -> None:
    await flaky_at_broker(ctx)


class ExpectedFailure(Exception):
    pass


EXHAUSTING = RetryPolicy(attempts=2, backoff=0.01, max_retries=2, retry_delay=0.1, retry_jitter=0)


@handler("retries.always_fails", policy=EXHAUSTING)
async def always_fails(ctx: JobContext) -> None:
    record(ctx)
    raise ExpectedFailure(f"broken for good, run {ctx.attempt}")


@handler("retries.on_time")
async def on_time(ctx: JobContext) -> None:
    record(ctx)
    succeeded.add(ctx.job_id)


def broker_delay_queues(config: Settings, policy: RetryPolicy, runs: int) -> list[str]:
    return [
        delay_queue(config.namespace, "default", delay_tier_ms(policy.broker_delay(a)))
        for a in range(runs)
    ]


def assert_runs(
    runs: list[tuple[int, int, float]], tries: list[tuple[int, int]], min_gaps: list[float]
) -> None:
    """The runs were these (attempt, try) pairs, each at least its backoff after the last."""
    assert [(attempt, try_number) for attempt, try_number, _ in runs] == tries
    gaps = [b[2] - a[2] for a, b in itertools.pairwise(runs)]
    for gap, least in zip(gaps, min_gaps, strict=True):
        assert gap >= least - 0.01, (gaps, "shorter than the backoff")


async def test_broker_retries_run_again_with_growing_attempt_and_delay(
    settings: Settings, start_worker: StartWorker, extra_queues: list[str]
) -> None:
    extra_queues.extend(broker_delay_queues(settings, BROKER, 3))
    await start_worker(settings)
    async with Client(settings) as client:
        job_id = await client.enqueue("retries.flaky_at_broker", {"failures": 3})
    await wait_for(lambda: job_id in succeeded, what="the job to succeed on its 4th run")

    assert_runs(calls[job_id], [(0, 1), (1, 1), (2, 1), (3, 1)], min_gaps=[0.3, 0.6, 1.2])


async def test_attempt_count_survives_a_worker_restart(
    settings: Settings, start_worker: StartWorker, extra_queues: list[str]
) -> None:
    waiting_in = delay_queue(settings.namespace, "default", delay_tier_ms(SLOW.broker_delay(0)))
    extra_queues.append(waiting_in)
    first = await start_worker(settings)
    async with Client(settings) as client:
        job_id = await client.enqueue("retries.flaky_slow_retry", {"failures": 1})
    # processed counts a delivery once its successor (here the retry) is confirmed
    await wait_for(lambda: first.processed == 1, what="the first run and its retry")
    await first.stop()
    assert len(calls[job_id]) == 1
    assert await queue_depth(waiting_in) == 1

    await start_worker(settings, worker_id="second")
    await wait_for(lambda: job_id in succeeded, what="the job to finish on the new worker")
    assert [attempt for attempt, _, _ in calls[job_id]] == [0, 1]


async def test_short_delay_is_not_held_back_by_a_longer_one_enqueued_earlier(
    settings: Settings, start_worker: StartWorker, extra_queues: list[str]
) -> None:
    extra_queues.extend(
        delay_queue(settings.namespace, "default", delay_tier_ms(s)) for s in (30, 1)
    )
    await start_worker(settings)
    async with Client(settings) as client:
        late = await client.enqueue("retries.on_time", {"delay": 30}, delay=30)
        before = time.monotonic()
        early = await client.enqueue("retries.on_time", {"delay": 1}, delay=1)
    await wait_for(lambda: early in succeeded, timeout=15, what="the 1 s job to run")
    assert calls[early][0][2] - before >= 0.95
    assert late not in calls


async def test_exhausted_retries_leave_one_dead_letter_with_the_error(
    settings: Settings, start_worker: StartWorker, extra_queues: list[str]
) -> None:
    extra_queues.extend(broker_delay_queues(settings, EXHAUSTING, 2))
    await start_worker(settings)
    async with Client(settings) as client:
        job_id = await client.enqueue("retries.always_fails", {"x": 1})
    [dead] = await take_dead_letters(settings, 1)

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
    # not a Transient error: no in-process tries, 1 + max_retries broker-level runs;
    # the body is the last run's, untouched
    assert [(attempt, tries) for attempt, tries, _ in calls[job_id]] == [(0, 1), (1, 1), (2, 1)]
    message = decode(dead.body)
    assert (message.id, message.type, message.attempt) == (job_id, "retries.always_fails", 2)
    assert await queue_depth(retained_queue(settings.namespace)) == 0


async def test_a_body_without_a_queue_retries_on_the_queue_it_came_from(
    settings: Settings, start_worker: StartWorker, extra_queues: list[str]
) -> None:
    extra_queues.append(work_queue(settings.namespace, "emails"))
    extra_queues.append(
        delay_queue(settings.namespace, "emails", delay_tier_ms(BROKER.broker_delay(0)))
    )
    await start_worker(settings, ["emails"])
    job_id = f"no-queue-field-{settings.namespace}"
    body = orjson.dumps(
        {"type": "retries.flaky_at_broker", "id": job_id, "payload": {"failures": 1}}
    )
    await publish_raw(settings, body, routing_key="emails")
    await wait_for(lambda: job_id in succeeded, what="the job's retry to run on 'emails'")
    assert [attempt for attempt, _, _ in calls[job_id]] == [0, 1]
