"""An error too big for an AMQP header frame still gives one dead letter, cut short."""

from __future__ import annotations

import re

from engine import Client, JobContext, RetryPolicy, handler
from engine.deadletters.protocol import MAX_ERROR_MESSAGE, MAX_TRACEBACK, bounded
from engine.pg.store import Store
from engine.settings import Settings
from tests.conftest import wait_for
from tests.integration.deadletters.test_recording import running


@handler("huge.error", policy=RetryPolicy(attempts=1, max_retries=0))
async def huge_error(ctx: JobContext) -> None:
    raise RuntimeError("x" * 300_000)  # beyond RabbitMQ's default frame_max of 128 KiB


def test_a_long_text_is_cut_saying_how_much() -> None:
    for text, keep_end in (("a" * 100 + "END", True), ("START" + "b" * 100, False)):
        cut = bounded(text, 50, keep_end=keep_end)
        marker = re.search(r" \[\.\.\.cut: (\d+) more characters\]", cut)
        assert len(cut) == 50 and marker
        assert len(cut) - len(marker.group(0)) + int(marker.group(1)) == len(text)
        assert cut.endswith("END") if keep_end else cut.startswith("START")
    assert bounded("short", 50) == "short"


async def test_a_job_failing_with_a_huge_error_is_dead_lettered_once(
    dead_settings: Settings, store: Store
) -> None:
    async with running(dead_settings), Client(dead_settings) as client:
        await client.declare_queue()
        job_id = await client.enqueue("huge.error", None, job_id="huge-1")

        async def stored() -> bool:
            return bool(await store.history(job_id))

        await wait_for(stored, what="the dead letter of a huge error")
    [row] = await store.history(job_id)
    assert row["error_type"] == "RuntimeError"
    assert (
        len(row["error_message"]) <= MAX_ERROR_MESSAGE and "more characters" in row["error_message"]
    )
    assert len(row["traceback"]) <= MAX_TRACEBACK
