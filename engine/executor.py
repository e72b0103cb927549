"""One delivery in, one :class:`Outcome` out: decode, look up, run the attempts, classify.

The executor never acks, publishes or sleeps between broker retries; the worker
acts on the outcome. Cancellation (worker shutdown, a person suspending the job)
propagates untouched.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import CodeType
from typing import Any

from tenacity import RetryCallState

from engine.context import CheckpointSaver, JobContext
from engine.errors import JobStopped, MessageError, UnknownJobType
from engine.message import JobMessage, check_headers, decode, job_id_problem, new_job_id
from engine.registry import Handler, lookup
from engine.retry import decide
from engine.states import Verdict

log = logging.getLogger("lazarus.worker")


class DeadReason:
    """Why a job left its queue for the dead letters (the ``x-lazarus-reason`` header)."""

    EXHAUSTED = "retries exhausted"
    PERMANENT = "permanent error"
    MALFORMED = "malformed message"
    UNKNOWN_TYPE = "unknown job type"
    CRASH_LOOP = "crash loop"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An exception as it is stored and shown: type, message and full traceback."""

    type: str
    message: str
    traceback: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """The exception with its full traceback (chained causes included)."""
        kind = type(exc)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        text = str(exc) or repr(exc)
        return cls(name, text, format_traceback(exc))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one delivery, and what the worker must do about it."""

    verdict: Verdict
    message: JobMessage | None  # None when the body could not be decoded
    job_id: str
    error: ErrorInfo | None = None
    reason: str | None = None  # for DEAD: a DeadReason
    delay: float = 0.0  # for RETRY: seconds before the next run
    checkpoint: Any = None  # the progress saved last, carried by the retry copy


def format_traceback(exc: BaseException) -> str:
    """``traceback.format_exception`` without the ``^^^`` position markers.

    Python 3.11 re-parses every source line to draw them, which was a third of the time
    of a dying job in a burst (measured, bench/); the file, line and code stay. A burst
    of one failure shares its stack, so an unchained exception's stack text is cached.
    """
    if exc.__cause__ is None and exc.__context__ is None:
        frames = tuple((f.f_code, line) for f, line in traceback.walk_tb(exc.__traceback__))
        stack = _stack_text(frames) if frames else ""
        return stack + "".join(traceback.format_exception_only(exc))
    return _chained_text(exc)


@functools.lru_cache(maxsize=512)
def _stack_text(frames: tuple[tuple[CodeType, int], ...]) -> str:
    summary = traceback.StackSummary.from_list(
        [(code.co_filename, line, code.co_name, None) for code, line in frames]
    )
    return "Traceback (most recent call last):\n" + "".join(summary.format())


def _chained_text(exc: BaseException) -> str:
    summary = traceback.TracebackException.from_exception(exc)
    pending = [summary]
    while pending:
        current = pending.pop()
        for frame in current.stack:
            frame.colno = frame.end_colno = None
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return "".join(summary.format())


def fallback_job_id(body: bytes, message_id: str | None) -> str:
    """An id for a dead letter's body without a usable one: the AMQP message id if it can
    be a job id, else one derived from the bytes, so that copies of one dead message give
    one row (and a copy's message id always fits)."""
    if message_id and job_id_problem(message_id) is None:
        return message_id
    return str(uuid.UUID(bytes=hashlib.sha256(body).digest()[:16], version=5))


class Executor:
    """Runs jobs for one worker."""

    def __init__(self, worker_id: str, *, max_message_bytes: int = 1_048_576) -> None:
        self.worker_id = worker_id
        self.max_message_bytes = max_message_bytes

    def prepare(
        self,
        body: bytes,
        message_id: str | None = None,
        queue: str = "default",
        headers: Mapping[str, Any] | None = None,
    ) -> Outcome | tuple[Handler, JobMessage]:
        """The handler and message of a delivery, or the DEAD outcome of a bad one.

        ``queue``: where the delivery came from, the queue of a body that names none. A
        body without an id takes the AMQP message id, else a new one: two identical
        bodies published twice are two jobs. ``headers``: the delivery's, whose values
        the worker reads are checked too (engine.message.check_headers). A malformed
        message's job id is the AMQP message id if it can be one, else derived from the
        body (:func:`fallback_job_id`): its copies share it, and it always fits.
        """
        message: JobMessage | None = None
        try:
            message = decode(
                body,
                max_bytes=self.max_message_bytes,
                fallback_id=message_id or new_job_id(),
                default_queue=queue,
            )
            check_headers(headers)
        except MessageError as exc:
            return Outcome(
                Verdict.DEAD,
                None,
                message.id if message is not None else fallback_job_id(body, message_id),
                _error("MessageError", exc.reason),
                DeadReason.MALFORMED,
            )
        try:
            handler = lookup(message.type)
        except UnknownJobType as exc:
            return Outcome(
                Verdict.DEAD,
                message,
                message.id,
                _error("UnknownJobType", str(exc)),
                DeadReason.UNKNOWN_TYPE,
            )
        return handler, message

    async def run(
        self, handler: Handler, message: JobMessage, saver: CheckpointSaver | None = None
    ) -> Outcome:
        """Run the in-process tries of one broker-level attempt and classify how it ended.

        Raises JobStopped if the run failed after a checkpoint of it was refused (a person
        stopped the job): that is no failure to retry or dead-letter.
        """
        policy = handler.policy
        context = JobContext(message, self.worker_id, 1, saver)
        try:
            try:
                await _call(handler, context, policy.timeout)
            except Exception as first:
                if policy.attempts < 2 or not policy.is_transient(first) or context.stopped:
                    raise
                wait = policy.first_wait()
                _log_try(context, handler, policy.attempts, wait, first)

                def failed_again(state: RetryCallState) -> None:
                    error = state.outcome.exception() if state.outcome else None
                    waiting = state.upcoming_sleep
                    _log_try(context, handler, policy.attempts, waiting, error)

                await asyncio.sleep(wait)
                async for attempt in policy.after_first_failure(failed_again):
                    if context.stopped:  # outside the attempt: tenacity must not retry it
                        raise JobStopped(f"job {message.id}: stopped while it ran") from first
                    with attempt:
                        context.try_number = attempt.retry_state.attempt_number + 1
                        await _call(handler, context, policy.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if context.stopped:  # whatever the handler made of the refused checkpoint
                if isinstance(exc, JobStopped):
                    raise
                raise JobStopped(f"job {message.id}: stopped while it ran") from exc
            error = ErrorInfo.from_exception(exc)
            verdict = decide(policy, exc, message.attempt, message.max_retries)
            if verdict is Verdict.RETRY:
                return Outcome(
                    Verdict.RETRY,
                    message,
                    message.id,
                    error,
                    delay=policy.broker_delay(message.attempt),
                    checkpoint=context.checkpoint_state,
                )
            reason = DeadReason.PERMANENT if policy.is_permanent(exc) else DeadReason.EXHAUSTED
            return Outcome(
                Verdict.DEAD,
                message,
                message.id,
                error,
                reason,
                checkpoint=context.checkpoint_state,
            )
        return Outcome(Verdict.SUCCEEDED, message, message.id)


def _log_try(
    context: JobContext, handler: Handler, tries: int, wait: float, error: BaseException | None
) -> None:
    """One line per failed in-process try: the retries a person expects to see."""
    log.info(
        "job %s (%s) try %d of %d failed, trying again in %.2f s: %r",
        context.job_id, handler.name, context.try_number, tries, wait, error,
    )  # fmt: skip


async def _call(handler: Handler, context: JobContext, timeout: float | None) -> Any:
    if timeout is None:
        return await handler.func(context)
    try:
        async with asyncio.timeout(timeout):
            return await handler.func(context)
    except TimeoutError:
        raise TimeoutError(
            f"job {context.job_id} ({handler.name}) ran longer than {timeout} s"
        ) from None


def _error(kind: str, text: str) -> ErrorInfo:
    return ErrorInfo(kind, text, "")
