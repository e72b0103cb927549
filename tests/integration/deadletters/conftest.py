"""Dead-letter fixtures: a crash point made to happen on purpose."""

from __future__ import annotations

from typing import Any

import pytest

from engine import PublishFailed
from engine.deadletters import protocol as deadletter_module
from engine.worker import settler as settler_module


@pytest.fixture
def refuse_one_dead_letter(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The worker's next dead-letter publish fails as a refused one would; the returned
    list is empty once it has. Nacked deliveries come back after 0.1 s, not 1 s."""
    pending = [1]
    real = deadletter_module.publish_dead

    async def refuse_once(*args: Any, **kwargs: Any) -> None:
        if pending:
            pending.pop()
            raise PublishFailed("the broker refused the dead letter (on purpose)")
        await real(*args, **kwargs)

    monkeypatch.setattr(settler_module, "publish_dead", refuse_once)
    monkeypatch.setattr(settler_module, "NACK_BACKOFF", 0.1)
    return pending
