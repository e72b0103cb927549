"""What a run of a job came to: the vocabulary the executor speaks and the settler acts on.

An :class:`Outcome` carries a :class:`~engine.states.Verdict`, the error as it is stored
(:class:`ErrorInfo`) and, for a death, why (:class:`DeadReason`). It holds no broker or
database object, so every wing can read it.
"""

from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass
from types import CodeType
from typing import Any

from engine.message import JobMessage
from engine.states import Verdict


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
    result: Any = None  # for SUCCEEDED: what the handler returned (a workflow step's result)


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
