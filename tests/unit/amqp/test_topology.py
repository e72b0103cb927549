"""Names of a namespace's exchanges and queues, delay tiers and requested delays."""

from __future__ import annotations

import pytest

from engine.amqp.topology import (
    dead_exchange,
    delay_queue,
    delay_queue_arguments,
    delay_tier_ms,
    namespace_exchanges,
    record_exchange,
    recorder_queue,
    requested_delay_ms,
    retained_queue,
    work_exchange,
    work_queue,
    work_queue_arguments,
)
from engine.settings import QueueType


def test_names_of_a_namespace() -> None:
    assert work_exchange("ns") == "ns.work"
    assert work_queue("ns", "mail") == "ns.q.mail"
    assert dead_exchange("ns") == "ns.dead"
    assert retained_queue("ns") == "ns.dead.retained"
    assert recorder_queue("ns") == "ns.dead.recorder"
    assert record_exchange("ns") == "ns.dead.record"
    assert namespace_exchanges("ns") == ["ns.work", "ns.dead", "ns.dead.record"]
    assert delay_queue("ns", "mail", 1200) == "ns.delay.mail.1200"


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [
        (0, 1),
        (0.0001, 1),
        (0.007, 7),
        (0.3, 300),
        (1, 1000),
        (1.234, 1200),
        (1.25, 1200),  # round half to even
        (9.96, 10_000),
        (30, 30_000),
        (3600, 3_600_000),
    ],
)
def test_delay_tier_keeps_two_significant_digits_of_milliseconds(seconds: float, ms: int) -> None:
    assert delay_tier_ms(seconds) == ms


def test_delay_tier_is_within_five_percent_of_the_delay() -> None:
    for ms in [*range(1, 5000), *range(5000, 2_000_000, 997)]:
        tier = delay_tier_ms(ms / 1000)
        assert abs(tier - ms) <= 0.05 * ms, (ms, tier)


def test_jittered_delays_share_few_tiers() -> None:
    tiers = {delay_tier_ms(10 + i / 100) for i in range(-100, 101)}
    assert tiers == {*range(9_000, 10_000, 100), 10_000, 11_000}


@pytest.mark.parametrize(("seconds", "ms"), [(7.3, 7_300), (7.34, 7_300), (86_399, 86_000_000)])
def test_a_retry_backoff_still_tiers(seconds: float, ms: int) -> None:
    assert delay_tier_ms(seconds) == ms


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [
        (86_399, 86_399_000),
        (86_399.2, 86_400_000),
        (7.3, 8_000),
        (3_600, 3_600_000),
        (1, 1_000),
        (0.001, 1_000),
        (1.0004, 2_000),
        (1 + 1e-12, 1_000),  # float noise, not a second more
        (2_592_000, 2_592_000_000),
    ],
)
def test_a_requested_delay_is_whole_seconds_rounded_up(seconds: float, ms: int) -> None:
    assert requested_delay_ms(seconds) == ms


def test_a_requested_delay_is_never_early_and_at_most_a_second_late() -> None:
    for ms in [*range(1, 5000, 7), *range(5000, 200_000_000, 99_991)]:
        queued = requested_delay_ms(ms / 1000)
        assert ms <= queued < ms + 1000, (ms, queued)
        assert queued % 1000 == 0


def test_a_requested_delay_queue_holds_its_messages_for_that_delay() -> None:
    args = delay_queue_arguments("ns", "mail", requested_delay_ms(86_399), QueueType.QUORUM)
    assert args["x-message-ttl"] == 86_399_000
    assert args["x-expires"] > 86_399_000


@pytest.mark.parametrize("queue_type", list(QueueType))
def test_delay_queue_dead_letters_back_to_its_work_queue(queue_type: QueueType) -> None:
    args = delay_queue_arguments("ns", "mail", 1200, queue_type)
    assert args["x-message-ttl"] == 1200
    assert args["x-dead-letter-exchange"] == "ns.work"
    assert args["x-dead-letter-routing-key"] == "mail"
    assert args["x-expires"] > 1200
    assert args["x-queue-type"] == queue_type.value


def test_work_queue_dead_letters_to_the_recorders_exchange() -> None:
    quorum = work_queue_arguments("ns", QueueType.QUORUM)
    classic = work_queue_arguments("ns", QueueType.CLASSIC)
    assert quorum["x-dead-letter-exchange"] == classic["x-dead-letter-exchange"] == "ns.dead.record"
    assert "x-delivery-limit" in quorum and "x-delivery-limit" not in classic
