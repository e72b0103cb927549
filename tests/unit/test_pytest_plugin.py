"""The lazarus fixture as a user's project gets it: installed as a pytest plugin, nothing to
import or configure, in pytest-asyncio's strict mode and in its auto mode."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TEST = """
import pytest

from engine import JobContext, Permanent, RetryPolicy
from engine.states import JobState


@pytest.mark.asyncio
@pytest.mark.lazarus(queues=["default", "mail"], concurrency=2)
async def test_mail(lazarus):
    @lazarus.handler("send", queue="mail", policy=RetryPolicy(attempts=1, max_retries=0))
    async def send(ctx: JobContext) -> None:
        if ctx.payload == "bad":
            raise Permanent("no such address")

    good = await lazarus.enqueue("send", "ok")
    bad = await lazarus.enqueue("send", "bad")
    await lazarus.drain()
    assert (await lazarus.job(good)).state == JobState.SUCCEEDED
    assert [d.reason for d in await lazarus.dead_letters(bad)] == ["permanent error"]
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_a_user_project_gets_the_fixture_without_configuring_it(
    pytester: pytest.Pytester, mode: str
) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    # pytest-asyncio warns about its own unset loop scope; the plugin must add no warning.
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "error",
        "-o", f"asyncio_mode={mode}", "-o", "asyncio_default_fixture_loop_scope=function",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
