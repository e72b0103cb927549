"""Workflow fixtures: the lifecycle ones (a migrated namespace, tracking workers), on
quorum queues only: what these tests pin is PostgreSQL's (readiness, compare-and-sets),
and the queue type changes none of it."""

from __future__ import annotations

import pytest

from engine.settings import QueueType
from tests.integration.lifecycle.conftest import control, tracking_worker

__all__ = ["control", "tracking_worker"]


@pytest.fixture
def queue_type() -> QueueType:
    return QueueType.QUORUM
