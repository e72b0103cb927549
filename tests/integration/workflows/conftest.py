"""Workflow fixtures: the lifecycle ones (a migrated namespace, tracking workers)."""

from __future__ import annotations

from tests.integration.lifecycle.conftest import control, tracking_worker

__all__ = ["control", "tracking_worker"]
