"""The event loop choice: uvloop by default where installed, asyncio on request."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest
import uvloop

from engine import loop
from engine.errors import ConfigError
from engine.settings import EventLoop, load_settings


def test_auto_and_uvloop_run_on_uvloop() -> None:
    async def which() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    assert loop.run(which(), EventLoop.AUTO) is uvloop.Loop
    assert loop.run(which(), EventLoop.UVLOOP) is uvloop.Loop
    assert not issubclass(loop.run(which(), EventLoop.ASYNCIO), uvloop.Loop)


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert loop.loop_factory(EventLoop.AUTO) is None


def test_asking_for_uvloop_without_it_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)

    async def never() -> None:
        raise AssertionError("must not run")

    with pytest.raises(ConfigError, match="LAZARUS_EVENT_LOOP: uvloop is not installed"):
        loop.run(never(), EventLoop.UVLOOP)


def test_a_bad_event_loop_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAZARUS_EVENT_LOOP", "trio")
    with pytest.raises(ConfigError, match="LAZARUS_EVENT_LOOP"):
        load_settings()
