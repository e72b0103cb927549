"""Engine rules on the in-memory broker and store: no RabbitMQ, no PostgreSQL.

The settings name ports where nothing listens: a test here that reached for a service
would fail instead of passing by luck on a machine that runs them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from engine.settings import Settings
from engine.testing import Lazarus

NOWHERE = Settings(
    amqp_url="amqp://guest:guest@127.0.0.1:1/",  # type: ignore[arg-type]
    database_url="postgresql://nobody@127.0.0.1:1/none",  # type: ignore[arg-type]
    namespace="mem",
    connect_timeout=0.2,
    unknown_type_grace=0,
)

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
async def lz(request: pytest.FixtureRequest) -> AsyncIterator[Lazarus]:
    """A started harness; ``@pytest.mark.lazarus(queues=..., concurrency=...)`` passes options."""
    marker = request.node.get_closest_marker("lazarus")
    options = dict(marker.kwargs) if marker is not None else {}
    async with Lazarus(settings=NOWHERE, **options) as harness:
        yield harness
