"""Log lines carry the job bound to the running task, as JSON for machines."""

from __future__ import annotations

import asyncio
import io
import logging

import orjson
import structlog

from engine.logs import configure_logging


async def test_a_line_logged_inside_a_job_task_carries_the_job() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    try:

        async def job() -> None:
            structlog.contextvars.bind_contextvars(
                job_id="j-1", job_type="send_email", attempt=2, queue="default"
            )
            logging.getLogger("myapp").info("sending %s", "mail")

        async def other() -> None:
            logging.getLogger("myapp").info("not in a job")

        await asyncio.gather(asyncio.create_task(job()), asyncio.create_task(other()))
    finally:
        logging.getLogger().handlers.clear()
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    inside = next(line for line in lines if line["event"] == "sending mail")
    outside = next(line for line in lines if line["event"] == "not in a job")
    assert inside["job_id"] == "j-1" and inside["attempt"] == 2
    assert (inside["job_type"], inside["queue"], inside["level"]) == (
        "send_email",
        "default",
        "info",
    )
    assert "job_id" not in outside


def test_a_terminal_gets_plain_text() -> None:
    out = io.StringIO()
    configure_logging(json=False, stream=out)
    try:
        logging.getLogger("myapp").warning("plain")
    finally:
        logging.getLogger().handlers.clear()
    assert "plain" in out.getvalue() and not out.getvalue().startswith("{")
