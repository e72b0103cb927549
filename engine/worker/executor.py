"""One delivery in, one :class:`Outcome` out: decode, look up, run the attempts, classify.

The executor never acks, publishes or sleeps between broker retries; the worker
acts on the outcome. Cancellation (worker shutdown, a person suspending the job)
propagates untouched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from tenacity import RetryCallState

from engine.context import CheckpointSaver, JobContext, StepResults
from engine.errors import JobStopped, MessageError, UnknownJobType
from engine.message import (
    MAX_RESULT_BYTES,
    JobMessage,
    check_headers,
    decode,
    fallback_job_id,
    json_problem,
    new_job_id,
)
from engine.outcome import DeadReason, ErrorInfo, Outcome
from engine.registry import Handler, lookup
from engine.retry import dead_reason, decide
from engine.states import Verdict

log = logging.getLogger("lazarus.worker")


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
        self,
        handler: Handler,
        message: JobMessage,
        saver: CheckpointSaver | None = None,
        results: StepResults | None = None,
    ) -> Outcome:
        """Run the in-process tries of one broker-level attempt and classify how it ended.

        Raises JobStopped if the run failed after a checkpoint of it was refused (a person
        stopped the job): that is no failure to retry or dead-letter. A workflow step's
        return value is its result: one that cannot be stored (not JSON, over
        ``MAX_RESULT_BYTES``) is a permanent failure, said so, not a retry loop.
        """
        policy = handler.policy
        context = JobContext(message, self.worker_id, 1, saver, results)
        result: Any = None
        try:
            try:
                result = await _call(handler, context, policy.timeout)
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
                        result = await _call(handler, context, policy.timeout)
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
            reason = dead_reason(policy, exc, message.attempt, message.max_retries)
            return Outcome(
                Verdict.DEAD,
                message,
                message.id,
                error,
                reason,
                checkpoint=context.checkpoint_state,
            )
        if message.workflow is not None:
            problem = json_problem(result, MAX_RESULT_BYTES)
            if problem is not None:
                error = _error("ResultError", f"the step's result {problem}")
                return Outcome(Verdict.DEAD, message, message.id, error, DeadReason.PERMANENT)
        return Outcome(Verdict.SUCCEEDED, message, message.id, result=result)


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
