"""The ``lazarus`` pytest fixture: a started :class:`engine.testing.Lazarus` per test.

Installed with Lazarus as a pytest plugin (the ``pytest11`` entry point), so a test
suite only writes ``async def test_x(lazarus): ...``. Options come from
``@pytest.mark.lazarus(queues=["default", "mail"], concurrency=4)``. The fixture needs
pytest-asyncio; without it this plugin defines nothing (and says nothing: a project
that does not use it must not get a warning from it).
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from engine.testing import Lazarus

MARKER = "lazarus(queues=..., concurrency=..., settings=...): options of the lazarus fixture"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)


if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def lazarus(request: pytest.FixtureRequest) -> AsyncIterator[Lazarus]:
        """A worker, recorder and admin over an in-memory broker and store, stopped after
        the test; handlers the test registers through it are unregistered."""
        from engine.testing import Lazarus

        marker = request.node.get_closest_marker("lazarus")
        options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
        async with Lazarus(**options) as harness:
            yield harness
