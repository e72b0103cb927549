"""Which engine modules one death and one HTTP requeue pass through, measured at run time.

``python -m bench.paths``: in a throw-away namespace, a worker (recording states) and the
dead-letter service run; once idle, the profiler is switched on, one job that fails
permanently is published, and every engine module whose code runs until its dead-letter
row is stored is listed. Then one ``POST /api/dead-letters/requeue`` of that job goes
through the admin app (httpx over ASGI) and its modules are listed the same way, from the
request to its answer (the new generation's message is confirmed by then), with the
worker stopped so that it does not run the job meanwhile; a new worker then runs it.
Background loops (control polls, heartbeats) tick during the windows: modules an idle
window of the same length also reaches are marked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import httpx
from pydantic import SecretStr

from bench.lazarus import fresh_namespace
from engine import Client, JobContext, Permanent, RetryPolicy, Worker, handler
from engine.pg.store import Store
from engine.settings import Settings
from engine.web.api import create_app
from engine.worker.runner import DeadLetterService

TOKEN = "paths-benchmark-token-0123456789"
runs: list[int] = []


@handler("bench_paths_die", policy=RetryPolicy(max_retries=0, attempts=1))
async def die_once(ctx: JobContext) -> None:
    runs.append(ctx.message.generation)
    if ctx.message.generation == 0:
        raise Permanent("bench_paths_die dies on purpose")


class ModuleTrace:
    """Engine modules whose functions are called while switched on."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            name = frame.f_globals.get("__name__", "")
            if name == "engine" or name.startswith("engine."):
                self.seen.add(name)

    async def during(self, until: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
        sys.setprofile(self._profile)
        try:
            deadline = time.monotonic() + timeout
            while not await until():
                if time.monotonic() > deadline:
                    raise TimeoutError("the traced operation did not finish")
                await asyncio.sleep(0.01)
        finally:
            sys.setprofile(None)


async def idle_modules(seconds: float) -> set[str]:
    trace = ModuleTrace()
    end = time.monotonic() + seconds

    async def later() -> bool:
        return time.monotonic() >= end

    await trace.during(later)
    return trace.seen


def show(title: str, seen: set[str], idle: set[str]) -> None:
    own = sorted(seen - idle)
    shared = sorted(seen & idle)
    print(f"{title}: {len(seen)} modules ({len(own)} only on this path)")
    for name in own:
        print(f"  {name}")
    for name in shared:
        print(f"  {name}  (also while idle)")


async def measure(settings: Settings, store: Store) -> None:
    worker = Worker(settings, ["default"], concurrency=4, store=store)
    service = DeadLetterService(settings, worker.broker, store)
    await worker.start()
    await service.start()
    try:
        await asyncio.sleep(1.0)
        async with Client(settings) as client:
            death = ModuleTrace()
            job_id = await client.enqueue("bench_paths_die", {"n": 1})

            async def stored() -> bool:
                return bool(await store.history(job_id))

            started = time.monotonic()
            await death.during(stored)
            took = time.monotonic() - started
        idle = await idle_modules(took)
        show("one death (publish to stored row)", death.seen, idle)

        await worker.stop()
        app = create_app(settings.model_copy(update={"admin_token": SecretStr(TOKEN)}))
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http,
        ):
            requeue = ModuleTrace()
            answer: list[httpx.Response] = []

            async def answered() -> bool:
                answer.append(
                    await http.post(
                        "/api/dead-letters/requeue",
                        json={"ids": [job_id], "retries": 0},
                        headers={"Authorization": f"Bearer {TOKEN}"},
                    )
                )
                return True

            started = time.monotonic()
            await requeue.during(answered)
            took = time.monotonic() - started
        print(f"requeue answered {answer[0].status_code} {answer[0].text}")
        idle = await idle_modules(took)
        worker = Worker(settings, ["default"], concurrency=4, store=store)
        await worker.start()
        for _ in range(600):
            if 1 in runs:
                break
            await asyncio.sleep(0.05)
        show("one HTTP requeue (request to answer, its message confirmed)", requeue.seen, idle)
        print("the next generation ran" if 1 in runs else "the next generation did not run")
    finally:
        await service.stop()
        await worker.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue-type", default="quorum", choices=["quorum", "classic"])
    args = parser.parse_args()
    async with fresh_namespace(args.queue_type) as (settings, store):
        assert store is not None
        await measure(settings, store)


if __name__ == "__main__":
    asyncio.run(main())
