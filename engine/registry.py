"""Handlers registered under a job type, with their retry policy."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.errors import UnknownJobType
from engine.retry import Reanimation, RetryPolicy

if TYPE_CHECKING:
    from engine.context import JobContext
    from engine.message import JobMessage

HandlerFunc = Callable[["JobContext"], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Handler:
    """A job type's function and how its failures are retried."""

    name: str
    func: HandlerFunc
    policy: RetryPolicy
    queue: str = "default"
    suspend_on_failure: bool = False
    track: bool = True  # record states in PostgreSQL; off for fire-and-forget work
    reanimate: Reanimation | None = None  # move dead jobs back automatically

    def suspends(self, message: JobMessage) -> bool:
        """Whether a final failure of ``message`` suspends it (True) or dead-letters it:
        the message's own ``suspend_on_failure`` when it says, else the handler's."""
        if message.suspend_on_failure is None:
            return self.suspend_on_failure
        return message.suspend_on_failure


_REGISTRY: dict[str, Handler] = {}


def handler(
    name: str | None = None,
    *,
    queue: str = "default",
    policy: RetryPolicy | None = None,
    suspend_on_failure: bool = False,
    track: bool = True,
    reanimate: Reanimation | None = None,
) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register ``async def f(ctx)`` as the handler of job type ``name`` (default: its name).

    ``suspend_on_failure``: a job whose retries are spent (or that fails permanently) is
    SUSPENDED with its checkpoint instead of dead-lettered. ``track=False`` skips state
    tracking (and with it checkpoints, suspension and duplicate detection) for
    fire-and-forget work. ``reanimate`` moves dead jobs back on a schedule (see
    :class:`~engine.retry.Reanimation`). Registering two different functions under
    one type is an error: the second would silently win in one process and lose in
    another.
    """

    def register(func: HandlerFunc) -> HandlerFunc:
        job_type = name or func.__name__
        existing = _REGISTRY.get(job_type)
        if existing is not None and existing.func is not func:
            raise ValueError(f"job type {job_type!r} is already registered by {existing.func!r}")
        _REGISTRY[job_type] = Handler(
            job_type,
            func,
            policy or RetryPolicy(),
            queue,
            suspend_on_failure,
            track,
            reanimate,
        )
        return func

    return register


def lookup(job_type: str) -> Handler:
    try:
        return _REGISTRY[job_type]
    except KeyError:
        raise UnknownJobType(f"no handler registered for job type {job_type!r}") from None


def swap(job_type: str, handler: Handler | None) -> Handler | None:
    """Make ``handler`` the one of ``job_type`` (None: no handler); return the one it had.

    For code that registers handlers for a while and puts things back after, as
    :mod:`engine.testing` does between tests; an application registers with :func:`handler`.
    """
    previous = _REGISTRY.pop(job_type, None)
    if handler is not None:
        _REGISTRY[job_type] = handler
    return previous


def registered() -> dict[str, Handler]:
    return dict(_REGISTRY)


def load_modules(modules: list[str]) -> None:
    """Import handler modules so their decorators register them."""
    for module in modules:
        importlib.import_module(module)
