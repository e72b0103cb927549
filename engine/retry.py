"""Retry policy: in-process attempts (tenacity), broker-level retries and their delays,
the budget a job has and why a job that died did; and the rule that moves dead jobs of
a type back by itself (:class:`Reanimation`).

The executor asks :func:`decide` what a failure means; the worker only carries
the decision out. Nothing here touches the broker.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from engine.errors import Permanent, Transient
from engine.outcome import DeadReason
from engine.states import RequeueMode, Verdict


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one job type retries.

    ``transient`` errors are retried ``attempts`` times in-process (exponential
    backoff with jitter, capped at ``backoff_max``). A job whose in-process
    attempts are spent is retried ``max_retries`` times through the broker,
    waiting ``retry_delay * retry_factor ** attempt`` (capped) between runs.
    ``permanent`` errors skip every retry. ``timeout`` bounds one attempt.
    """

    transient: tuple[type[BaseException], ...] = (Transient,)
    attempts: int = 3
    backoff: float = 0.05
    backoff_max: float = 2.0
    jitter: float = 0.05
    max_retries: int = 3
    retry_delay: float = 1.0
    retry_factor: float = 2.0
    retry_delay_max: float = 3600.0
    retry_jitter: float = 0.1  # +/- fraction of the broker delay, so retries of a burst spread out
    permanent: tuple[type[BaseException], ...] = field(default=(Permanent,))
    timeout: float | None = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.max_retries < 0:
            raise ValueError("RetryPolicy.max_retries must not be negative")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("RetryPolicy.timeout must be positive or None")

    def first_wait(self, rng: random.Random | None = None) -> float:
        """Seconds between the first try and the second: tenacity's first backoff step."""
        return min(self.backoff + (rng or random).uniform(0, self.jitter), self.backoff_max)

    def after_first_failure(
        self, before_sleep: Callable[[RetryCallState], None] | None = None
    ) -> AsyncRetrying:
        """A tenacity loop for tries 2..``attempts``, entered after the first try failed
        transiently and ``first_wait()`` passed; its waits continue the same schedule.

        The first try runs without tenacity: most jobs succeed at once, and setting up a
        retry loop for every job cost a fifth of a no-op job's time (measured, bench/).
        """
        return AsyncRetrying(
            retry=retry_if_exception(self.is_transient),
            stop=stop_after_attempt(self.attempts - 1),
            wait=wait_exponential_jitter(
                multiplier=self.backoff * 2, max=self.backoff_max, jitter=self.jitter
            ),
            reraise=True,
            before_sleep=before_sleep,
        )

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, self.transient) and not self.is_permanent(exc)

    def is_permanent(self, exc: BaseException) -> bool:
        return isinstance(exc, self.permanent)

    def budget(self, max_retries: int | None) -> int:
        """Broker retries a job has: its message's own ``max_retries``, else the policy's."""
        return self.max_retries if max_retries is None else max_retries

    def broker_delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before broker-level run number ``attempt + 1``."""
        try:
            base = min(self.retry_delay * self.retry_factor**attempt, self.retry_delay_max)
        except OverflowError:  # a message may carry a huge max_retries
            base = self.retry_delay_max
        spread = base * self.retry_jitter
        jittered = base + (rng or random).uniform(-spread, spread)
        return min(max(0.0, jittered), self.retry_delay_max)


def decide(
    policy: RetryPolicy, exc: BaseException, attempt: int, max_retries: int | None
) -> Verdict:
    """Retry through the broker or dead-letter, for a run that ended in ``exc``."""
    if policy.is_permanent(exc):
        return Verdict.DEAD
    return Verdict.RETRY if attempt < policy.budget(max_retries) else Verdict.DEAD


def dead_reason(
    policy: RetryPolicy, exc: BaseException | None, attempt: int, max_retries: int | None
) -> str:
    """The :class:`~engine.outcome.DeadReason` of a run that :func:`decide` sent to the dead.

    ``exc`` is None when only the stored text of the error is left (a redelivered copy of
    a death decided by a worker that died): a death before the budget was spent can only
    have been a permanent error, and one on the last attempt reads as exhausted.
    """
    if exc is not None and policy.is_permanent(exc):
        return DeadReason.PERMANENT
    return DeadReason.EXHAUSTED if attempt >= policy.budget(max_retries) else DeadReason.PERMANENT


@dataclass(frozen=True, slots=True)
class Reanimation:
    """Move dead jobs of a type back ``after`` seconds, with ``retries``, up to ``max_times``."""

    error_types: tuple[str, ...] = ()  # error types the rule applies to; empty: any
    after: float = 300.0  # seconds a job stays dead before it is moved back
    retries: int = 1  # broker-retry budget of the moved-back job
    max_times: int = 3  # automatic moves per job, over all its generations
    mode: RequeueMode = RequeueMode.RECOVER

    def __post_init__(self) -> None:
        if self.after < 0 or self.retries < 0 or self.max_times < 1:
            raise ValueError("Reanimation: after and retries >= 0, max_times >= 1")
