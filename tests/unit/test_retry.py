"""Retry policy: broker delays, and what a failure means."""

from __future__ import annotations

import random

import pytest

from engine.errors import Permanent, Transient
from engine.outcome import DeadReason
from engine.retry import RetryPolicy, dead_reason, decide
from engine.states import Verdict


def test_broker_delay_grows_by_the_factor_until_the_cap() -> None:
    policy = RetryPolicy(retry_delay=1.0, retry_factor=2.0, retry_delay_max=10.0, retry_jitter=0)
    assert [policy.broker_delay(a) for a in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_broker_delay_stays_capped_for_any_attempt() -> None:
    policy = RetryPolicy(retry_delay=1.0, retry_factor=2.0, retry_delay_max=60.0, retry_jitter=0)
    assert policy.broker_delay(5_000) == 60.0


def test_broker_delay_jitter_spreads_around_the_base_but_never_past_the_cap() -> None:
    policy = RetryPolicy(retry_delay=1.0, retry_factor=2.0, retry_delay_max=4.0, retry_jitter=0.1)
    rng = random.Random(7)
    early = [policy.broker_delay(1, rng) for _ in range(200)]
    assert all(1.8 <= d <= 2.2 for d in early)
    assert len(set(early)) > 100
    capped = [policy.broker_delay(10, rng) for _ in range(200)]
    assert all(3.6 <= d <= 4.0 for d in capped)


def test_permanent_error_is_dead_whatever_the_budget() -> None:
    policy = RetryPolicy(max_retries=5)
    assert decide(policy, Permanent("bad"), 0, None) is Verdict.DEAD
    assert decide(policy, Permanent("bad"), 0, 10) is Verdict.DEAD


@pytest.mark.parametrize("exc", [Transient("flaky"), ValueError("bug?"), TimeoutError()])
def test_failure_retries_while_attempt_is_below_the_budget(exc: Exception) -> None:
    policy = RetryPolicy(max_retries=3)
    assert [decide(policy, exc, a, None) for a in range(5)] == [
        Verdict.RETRY,
        Verdict.RETRY,
        Verdict.RETRY,
        Verdict.DEAD,
        Verdict.DEAD,
    ]


def test_message_max_retries_overrides_the_policy() -> None:
    policy = RetryPolicy(max_retries=3)
    assert decide(policy, Transient("x"), 0, 0) is Verdict.DEAD
    assert decide(policy, Transient("x"), 5, 6) is Verdict.RETRY
    assert decide(policy, Transient("x"), 6, 6) is Verdict.DEAD


def test_custom_permanent_errors_win_over_transient_ones() -> None:
    class Gone(Transient):
        pass

    policy = RetryPolicy(permanent=(Permanent, Gone))
    assert policy.is_permanent(Gone()) and not policy.is_transient(Gone())
    assert policy.is_transient(Transient()) and not policy.is_transient(ValueError())
    assert decide(policy, Gone(), 0, None) is Verdict.DEAD


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attempts": 0}, "attempts"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_invalid_policy_names_its_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=f"RetryPolicy.{field}"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_dead_reason_says_why_from_the_error_or_from_the_attempt_alone() -> None:
    policy = RetryPolicy(max_retries=2)
    assert dead_reason(policy, Permanent("no"), 0, None) == DeadReason.PERMANENT
    assert dead_reason(policy, Permanent("no"), 2, None) == DeadReason.PERMANENT
    assert dead_reason(policy, Transient("again"), 2, None) == DeadReason.EXHAUSTED
    # Only the stored text is left: a death before the budget was spent was permanent.
    assert dead_reason(policy, None, 1, None) == DeadReason.PERMANENT
    assert dead_reason(policy, None, 2, None) == DeadReason.EXHAUSTED
    assert dead_reason(policy, None, 1, 1) == DeadReason.EXHAUSTED
