"""The dashboard's workflow pages against the real services: the list by state, a
workflow at its own URL with the failed item first and its cause, and the retry that
moves it back, after which the workflow succeeds; an unknown workflow is a 404 page."""

from __future__ import annotations

import pytest

from tests.acceptance import workflow_app
from tests.acceptance.test_http import api_client, csrf, migrated
from tests.conftest import wait_for
from tests.integration.lifecycle.conftest import tracking_worker

pytestmark = pytest.mark.timeout(60)
assert workflow_app.IMPORT.name == "appwf.import"


async def test_find_the_failed_item_and_retry_it_from_the_page() -> None:
    async with migrated() as config, tracking_worker(config), api_client(config) as web:
        headers = await csrf(web)
        started = await web.post(
            "/api/workflows", json={"type": "appwf.import", "input": ["a", "bad-1", "cc"]}
        )
        workflow_id = started.json()["workflow_id"]

        async def state_is(state: str) -> bool:
            return (await web.get(f"/api/workflows/{workflow_id}")).json()["state"] == state

        await wait_for(lambda: state_is("failed"), what="the workflow to fail")
        listed = await web.get("/workflows?state=failed")
        assert listed.status_code == 200 and workflow_id in listed.text
        assert "2/4" in listed.text and "(1 failed)" in listed.text
        page = await web.get(f"/workflows/{workflow_id}")
        assert page.status_code == 200
        text = page.text
        assert text.index("Need a person") < text.index("Steps")
        assert "load[1]" in text and "cannot read bad-1" in text
        assert "retry 1 failed" in text and "2/3 · 1 dead" in text  # the fan-out's items

        retried = await web.post(
            "/ui/workflows/retry",
            data={"workflow_id": workflow_id, "mode": "recover", "retries": "2"},
            headers=headers,
        )
        assert retried.status_code == 200
        assert "moved back 1 failed steps and items" in retried.text
        await wait_for(lambda: state_is("succeeded"), what="the workflow to succeed")
        done = await web.get(f"/workflows/{workflow_id}")
        assert "Need a person" not in done.text and "retry" not in done.text

        wrong = await web.post(
            "/ui/workflows/suspend", data={"workflow_id": workflow_id}, headers=headers
        )
        assert "is not pending, running or failed" in wrong.text  # shown where one acted
        missing = await web.get("/workflows/no-such-workflow")
        assert missing.status_code == 404 and "no workflow" in missing.text
        refused = await web.post("/ui/workflows/retry", data={"workflow_id": workflow_id})
        assert refused.status_code == 403  # no CSRF token
