"""Workflows over HTTP against the real services: start one by name, read it, retry its
failed work items in one call ({"total": N}), suspend, resume, cancel, restart, and the
errors of each."""

from __future__ import annotations

import pytest

from tests.acceptance import workflow_app
from tests.acceptance.test_http import api_client, migrated
from tests.conftest import wait_for
from tests.integration.lifecycle.conftest import tracking_worker

pytestmark = pytest.mark.timeout(60)
assert workflow_app.IMPORT.name == "appwf.import"


async def test_start_fail_retry_succeed_over_http() -> None:
    async with migrated() as config, tracking_worker(config), api_client(config) as api:
        started = await api.post(
            "/api/workflows", json={"type": "appwf.import", "input": ["a", "bad", "ccc"]}
        )
        assert started.status_code == 201, started.text
        workflow_id = started.json()["workflow_id"]

        async def state_is(state: str) -> bool:
            return (await api.get(f"/api/workflows/{workflow_id}")).json()["state"] == state

        await wait_for(lambda: state_is("failed"), what="the workflow to fail")
        shown = (await api.get(f"/api/workflows/{workflow_id}")).json()
        assert [s["step"] for s in shown["needs_person"]] == ["load[1]"]
        assert shown["done"] == 2 and shown["total"] == 4
        assert "cannot read bad" in shown["cause"]

        retried = await api.put(f"/api/workflows/{workflow_id}/work-items/retry?type=recover")
        assert retried.json() == {"total": 1}
        await wait_for(lambda: state_is("succeeded"), what="the workflow to succeed")
        shown = (await api.get(f"/api/workflows/{workflow_id}")).json()
        total = next(s for s in shown["steps"] if s["step"] == "total")
        assert total["result"] == 1 + 3 + 3
        listed = (await api.get("/api/workflows?state=succeeded")).json()
        assert [w["workflow_id"] for w in listed["items"]] == [workflow_id]
        again = await api.put(f"/api/workflows/{workflow_id}/work-items/retry")
        assert again.json() == {"total": 0}


async def test_unique_names_and_errors_over_http() -> None:
    async with migrated() as config, api_client(config) as api:
        body = {"type": "appwf.import", "input": ["x"], "unique_name": "nightly"}
        first = await api.post("/api/workflows", json=body)
        assert first.status_code == 201
        held = await api.post("/api/workflows", json=body)
        assert held.status_code == 409 and "nightly" in held.json()["error"]
        same = await api.post("/api/workflows", json=body | {"if_absent": True})
        assert same.status_code == 200
        assert same.json()["workflow_id"] == first.json()["workflow_id"]
        assert same.json()["created"] is False

        unknown = await api.post("/api/workflows", json={"type": "no.such"})
        assert unknown.status_code == 422 and "no.such" in unknown.json()["error"]
        extra = await api.post("/api/workflows", json={"type": "appwf.import", "typo": 1})
        assert extra.status_code == 422
        assert (await api.get("/api/workflows/nope")).status_code == 404
        assert (await api.post("/api/workflows/nope/cancel")).status_code == 404
        assert (await api.put("/api/workflows/nope/work-items/retry")).status_code == 404
        many = await api.put("/api/workflows/work-items/retry", json={"workflow_ids": []})
        assert many.status_code == 422
        bad_cursor = await api.get("/api/workflows?before=yesterday")
        assert bad_cursor.status_code == 422

        workflow_id = first.json()["workflow_id"]
        suspended = await api.post(f"/api/workflows/{workflow_id}/suspend", json={"reason": "x"})
        assert suspended.json()["state"] == "suspended"
        assert (await api.post(f"/api/workflows/{workflow_id}/suspend")).status_code == 409
        assert (await api.post(f"/api/workflows/{workflow_id}/resume")).json()["state"] in (
            "running",
            "pending",
        )
        no_step = await api.post(f"/api/workflows/{workflow_id}/restart", json={"from_step": "x"})
        assert no_step.status_code == 422
        cancelled = await api.post(f"/api/workflows/{workflow_id}/cancel")
        assert cancelled.json()["state"] == "cancelled"
        assert (await api.post(f"/api/workflows/{workflow_id}/cancel")).status_code == 409
        retry = await api.put(f"/api/workflows/{workflow_id}/work-items/retry")
        assert retry.status_code == 409
        restarted = await api.post(f"/api/workflows/{workflow_id}/restart")
        assert restarted.json()["generation"] == 1 and restarted.json()["state"] == "running"
