"""engine.background: one named task, stopped by cancelling it and waiting for its end."""

from __future__ import annotations

import asyncio

import pytest

from engine.background import Background


async def test_stop_cancels_and_waits_until_the_task_has_ended() -> None:
    ended: list[str] = []

    async def loop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.01)  # cleanup that takes a moment
            ended.append("cleaned up")

    task = Background("lazarus-test")
    task.start(loop())
    await asyncio.sleep(0)
    assert task.started and not task.done
    await task.stop()
    assert ended == ["cleaned up"]
    assert not task.started
    await task.stop()  # twice is fine


async def test_a_crash_reaches_when_done_and_not_the_stopper() -> None:
    seen: list[BaseException | None] = []

    async def crash() -> None:
        raise RuntimeError("boom")

    task = Background("lazarus-test")
    task.start(crash(), when_done=lambda t: seen.append(t.exception()))
    await asyncio.sleep(0.01)
    assert task.done
    await task.stop()
    assert [str(e) for e in seen] == ["boom"]


async def test_a_second_start_is_refused_and_runs_nothing() -> None:
    runs: list[int] = []

    async def once(n: int) -> None:
        runs.append(n)
        await asyncio.sleep(3600)

    task = Background("lazarus-test")
    task.start(once(1))
    with pytest.raises(RuntimeError, match="lazarus-test is already running"):
        task.start(once(2))
    await asyncio.sleep(0)
    await task.stop()
    assert runs == [1]
