"""Which event loop a Lazarus process runs on: uvloop when it is there, asyncio otherwise.

uvloop (libuv, from the authors of asyncpg) runs the worker's per-delivery work
(callbacks, tasks, socket reads and writes) faster than the stock loop; see the
Performance section of the README for what it buys. ``LAZARUS_EVENT_LOOP=asyncio``
turns it off.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from engine.errors import ConfigError
from engine.settings import EventLoop

T = TypeVar("T")


def loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory for the chosen loop (None: asyncio's own)."""
    if choice is EventLoop.ASYNCIO:
        return None
    if importlib.util.find_spec("uvloop") is None:
        if choice is EventLoop.UVLOOP:
            raise ConfigError("LAZARUS_EVENT_LOOP: uvloop is not installed (pip install uvloop)")
        return None
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: EventLoop) -> T:
    """``asyncio.run`` on the chosen loop."""
    try:
        factory = loop_factory(choice)
    except ConfigError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
