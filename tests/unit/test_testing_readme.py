"""The example of the README's "Testing your handlers", as it stands there: it runs with
RabbitMQ and PostgreSQL out of reach (CI checks the README still holds it verbatim)."""

from engine import JobContext, RetryPolicy, Transient
from engine.states import DeadStatus, JobState
from engine.testing import Lazarus


async def test_a_charge_that_died_succeeds_once_requeued(lazarus: Lazarus) -> None:
    @lazarus.handler("charge", policy=RetryPolicy(attempts=1, max_retries=2, retry_delay=60))
    async def charge(ctx: JobContext) -> None:
        if ctx.message.generation == 0:
            raise Transient("card service down")

    job_id = await lazarus.enqueue("charge", {"amount": 5})
    drained = await lazarus.drain()  # waits of 60 s and 120 s skipped
    assert drained.delays_skipped == 2
    [death] = await lazarus.dead_letters(job_id)
    assert death.reason == "retries exhausted"
    assert (await lazarus.job(job_id)).state == JobState.DEAD

    await lazarus.requeue(job_id, retries=0)  # outbox, relay, broker, worker
    await lazarus.drain()
    assert (await lazarus.job(job_id)).state == JobState.SUCCEEDED
    assert [d.status for d in await lazarus.dead_letters(job_id)] == [DeadStatus.REQUEUED]


def test_the_readme_shows_this_example_verbatim() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    source = Path(__file__).read_text()
    example = source[source.index("from engine import") : source.index("\n\n\ndef test_the_readme")]
    assert example.strip() in readme
