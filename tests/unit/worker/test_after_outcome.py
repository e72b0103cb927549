"""The settler's after-outcome seam: what a final outcome leads to is published, confirmed,
before the job's ack; a failed publish or hook leaves the job to run again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from engine import JobContext, Permanent, RetryPolicy
from engine.amqp.port import Outgoing
from engine.amqp.topology import work_exchange
from engine.memory.broker import Published
from engine.message import JobMessage, encode
from engine.outcome import Outcome
from engine.states import JobState, Verdict
from engine.testing import Lazarus
from tests.unit.test_testing import NOWHERE


class Chain:
    """After ``step_one`` succeeds, ``step_two`` with the same payload; after any death,
    an ``alert`` naming the dead job."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.seen: list[tuple[str, Verdict]] = []
        self.failures = 0  # calls that raise before the hook works

    async def __call__(self, outcome: Outcome) -> Sequence[Outgoing]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("hook bug")
        message = outcome.message
        assert message is not None
        self.seen.append((message.type, outcome.verdict))
        if outcome.verdict is Verdict.SUCCEEDED and message.type == "step_one":
            follow = JobMessage(type="step_two", payload=message.payload, id=f"{message.id}-two")
        elif outcome.verdict is Verdict.DEAD:
            follow = JobMessage(type="alert", payload=message.id, id=f"{message.id}-alert")
        else:
            return []
        return [(work_exchange(self.namespace), "default", encode(follow), None, follow.id)]


async def test_a_success_publishes_its_successor_before_the_ack() -> None:
    ran: list[str] = []
    settings = NOWHERE.model_copy(update={"namespace": "after-ok"})
    chain = Chain(settings.namespace)
    async with Lazarus(settings=settings, after=[chain]) as harness:

        @harness.handler("step_one")
        async def step_one(ctx: JobContext) -> None:
            ran.append("one")

        @harness.handler("step_two")
        async def step_two(ctx: JobContext) -> None:
            ran.append(f"two {ctx.payload}")

        job_id = await harness.enqueue("step_one", "p", job_id="j1")
        await harness.drain()
        assert ran == ["one", "two p"]
        assert (await harness.job(job_id)).state == JobState.SUCCEEDED
        assert (await harness.job("j1-two")).state == JobState.SUCCEEDED


async def test_a_death_leads_to_its_successor_too() -> None:
    alerts: list[object] = []
    settings = NOWHERE.model_copy(update={"namespace": "after-dead"})
    async with Lazarus(settings=settings, after=[Chain(settings.namespace)]) as harness:

        @harness.handler("step_one", policy=RetryPolicy(attempts=1, max_retries=0))
        async def step_one(ctx: JobContext) -> None:
            raise Permanent("no")

        @harness.handler("alert")
        async def alert(ctx: JobContext) -> None:
            alerts.append(ctx.payload)

        await harness.enqueue("step_one", job_id="j2")
        await harness.drain()
        assert alerts == ["j2"]
        assert [d.reason for d in await harness.dead_letters("j2")] == ["permanent error"]


async def test_a_successor_the_broker_refuses_leaves_the_job_to_run_again() -> None:
    ran: list[str] = []
    settings = NOWHERE.model_copy(update={"namespace": "after-refused"})
    chain = Chain(settings.namespace)
    async with Lazarus(settings=settings, after=[chain]) as harness:

        @harness.handler("step_one")
        async def step_one(ctx: JobContext) -> None:
            ran.append("one")

        @harness.handler("step_two")
        async def step_two(ctx: JobContext) -> None:
            ran.append("two")

        def successor(published: Published) -> bool:
            return published.message_id == "j3-two"

        allow = harness.broker.refuse(successor)
        await harness.enqueue("step_one", job_id="j3")
        for _ in range(200):  # the refused job goes back after the settler's backoff
            if ran.count("one") >= 2:
                break
            await asyncio.sleep(0.05)
        assert ran.count("one") >= 2 and "two" not in ran
        allow()
        await harness.drain()
        assert ran[-1] == "two" and ran.count("two") == 1
        assert (await harness.job("j3")).state == JobState.SUCCEEDED


async def test_a_failing_hook_is_a_failed_successor_not_a_lost_job() -> None:
    ran: list[str] = []
    settings = NOWHERE.model_copy(update={"namespace": "after-bug"})
    chain = Chain(settings.namespace)
    chain.failures = 1
    async with Lazarus(settings=settings, after=[chain]) as harness:

        @harness.handler("step_one")
        async def step_one(ctx: JobContext) -> None:
            ran.append("one")

        @harness.handler("step_two")
        async def step_two(ctx: JobContext) -> None:
            ran.append("two")

        await harness.enqueue("step_one", job_id="j4")
        await harness.drain()
        assert ran == ["one", "one", "two"]
