"""Every failed attempt of a job, with its error and time, through a real worker and the
broker's retries: the API, the dashboard's job and dead-letter pages, and ``jobs show``."""

from __future__ import annotations

import os
from datetime import datetime

import orjson
import pytest

from engine import JobContext, RetryPolicy, handler
from engine.settings import Settings
from tests.acceptance.conftest import Cli
from tests.acceptance.test_http import api_client, csrf, enqueue, job_state, migrated
from tests.conftest import AMQP_URL, DATABASE_URL, wait_for
from tests.integration.lifecycle.conftest import tracking_worker

pytestmark = pytest.mark.timeout(60)

BROKER = RetryPolicy(attempts=1, max_retries=2, retry_delay=0.2, retry_factor=1, retry_jitter=0)


@handler("attempts.charge", policy=BROKER)
async def charge(ctx: JobContext) -> None:
    """Fails every run of generation 0: retried twice through the broker, then dead."""
    raise RuntimeError(f"card service down on run {ctx.attempt}")


def cli_for(config: Settings) -> Cli:
    return Cli(
        dict(os.environ)
        | {
            "LAZARUS_AMQP_URL": AMQP_URL,
            "LAZARUS_DATABASE_URL": DATABASE_URL,
            "LAZARUS_NAMESPACE": config.namespace,
            "LAZARUS_QUEUE_TYPE": config.queue_type.value,
        }
    )


async def test_each_attempt_is_shown_with_its_error_and_time() -> None:
    async with migrated() as ns, api_client(ns) as api:
        async with tracking_worker(ns):
            job_id = await enqueue(ns, "attempts.charge")

            async def dead() -> bool:
                return await job_state(api, job_id) == "dead"

            await wait_for(dead, what="the job to die")
        response = await api.get(f"/api/jobs/{job_id}/attempts")
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert [(a["generation"], a["attempt"], a["outcome"]) for a in items] == [
            (0, 0, "retrying"), (0, 1, "retrying"), (0, 2, "dead"),
        ]  # fmt: skip
        messages = [f"card service down on run {n}" for n in range(3)]
        assert [a["error_message"] for a in items] == messages
        assert {a["error_type"] for a in items} == {"RuntimeError"}
        assert all("card service down" in a["traceback"] and a["worker"] for a in items)
        times = [datetime.fromisoformat(a["at"]) for a in items]
        assert times[0] < times[1] < times[2]  # each run after its broker delay

        await csrf(api)  # opens the dashboard, which starts a session
        for url in (f"/jobs/{job_id}", f"/dead/{job_id}"):
            page = await api.get(url)
            assert page.status_code == 200, page.text
            assert "<h4>Attempts</h4>" in page.text
            assert all(text in page.text for text in [*messages, "retrying", "RuntimeError"])
            assert page.text.count('<time datetime="') >= 3  # the local-time script's hook

        cli = cli_for(ns)
        shown = cli.run("jobs", "show", job_id, "--json")
        assert shown.returncode == 0, shown.stderr
        row = orjson.loads(shown.stdout)
        assert row["state"] == "dead"
        assert [(a["attempt"], a["outcome"]) for a in row["attempts"]] == [
            (0, "retrying"), (1, "retrying"), (2, "dead"),
        ]  # fmt: skip
        text = cli.run("jobs", "show", job_id)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert any("attempts" in line for line in lines)
        assert [line for line in lines if "card service down on run" in line][-3:] == [
            line for line in lines if "RuntimeError" in line and "UTC" in line
        ][-3:]
