"""Workers killed, stopped or cut off from the broker lose no job and loop on none."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from engine import Client, JobContext, Worker, handler
from engine.amqp.topology import retained_queue, work_queue
from engine.message import H_ERROR_TYPE, H_REASON
from engine.settings import Settings
from tests.conftest import AMQP_URL, queue_depth, take_dead_letters, wait_for
from tests.integration.fault_handlers import events

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[3]
HANDLERS = "tests.integration.fault_handlers"

Spawn = Callable[..., Awaitable[asyncio.subprocess.Process]]
StartWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Spawn]:
    """Factory: run ``lazarus worker`` for fault_handlers as a subprocess; killed afterwards."""
    procs: list[asyncio.subprocess.Process] = []

    async def start(
        config: Settings, *, concurrency: int = 4, **env: str
    ) -> asyncio.subprocess.Process:
        environ = os.environ | {
            "PYTHONPATH": str(ROOT),
            "LAZARUS_AMQP_URL": AMQP_URL,
            "LAZARUS_NAMESPACE": config.namespace,
            "LAZARUS_QUEUE_TYPE": config.queue_type.value,
            "LAZARUS_MAX_REDELIVERIES": str(config.max_redeliveries),
        }
        log = (tmp_path / f"worker-{len(procs)}.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from engine.cli.main import main; main()",
            "worker",
            HANDLERS,
            "--no-record",  # dead letters stay in their queues: no PostgreSQL needed
            "--concurrency",
            str(concurrency),
            cwd=ROOT,
            env=environ | env,
            stdout=log,
            stderr=log,
        )
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def enqueue(config: Settings, job_type: str, payloads: list[dict[str, object]]) -> list[str]:
    async with Client(config) as client:
        await client.declare_queue()
        return [await client.enqueue(job_type, payload) for payload in payloads]


async def test_job_of_a_killed_worker_runs_again_on_another_worker(
    settings: Settings, spawn: Spawn, tmp_path: Path
) -> None:
    progress = tmp_path / "progress"
    [job_id] = await enqueue(
        settings,
        "faults.sleep",
        [{"file": str(progress), "first_run_seconds": 60, "seconds": 0}],
    )
    first = await spawn(settings)
    await wait_for(lambda: events(progress, "start") == [job_id], what="the job to start")
    first.kill()
    assert await first.wait() == -signal.SIGKILL

    await spawn(settings)
    await wait_for(lambda: events(progress, "done") == [job_id], what="the job to finish")
    assert events(progress, "start") == [job_id, job_id]
    assert await queue_depth(retained_queue(settings.namespace)) == 0


async def test_sigterm_lets_in_flight_jobs_finish_and_leaves_the_rest_queued(
    settings: Settings, spawn: Spawn, tmp_path: Path
) -> None:
    progress = tmp_path / "progress"
    payload = {"file": str(progress), "first_run_seconds": 1.5, "seconds": 1.5}
    job_ids = await enqueue(settings, "faults.sleep", [payload] * 4)
    worker = await spawn(settings, concurrency=2)
    await wait_for(lambda: len(events(progress, "start")) == 2, what="two jobs to start")
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(worker.wait(), timeout=20) == 0

    started = events(progress, "start")
    assert sorted(events(progress, "done")) == sorted(started)
    assert len(set(started)) == 2 and set(started) <= set(job_ids)
    assert await queue_depth(work_queue(settings.namespace, "default")) == 2
    assert await queue_depth(retained_queue(settings.namespace)) == 0


async def test_job_that_kills_its_worker_is_dead_lettered_as_a_crash_loop(
    settings: Settings, spawn: Spawn, tmp_path: Path
) -> None:
    config = settings.model_copy(update={"max_redeliveries": 2})
    progress = tmp_path / "progress"
    [job_id] = await enqueue(config, "faults.crash", [{"file": str(progress)}])
    retained = retained_queue(config.namespace)

    async def dead_or_exited(proc: asyncio.subprocess.Process) -> bool:
        return proc.returncode is not None or bool(await queue_depth(retained))

    for _ in range(config.max_redeliveries + 2):
        worker = await spawn(config)
        await wait_for(lambda w=worker: dead_or_exited(w), what="a crash or a dead letter")
        if worker.returncode is None:
            break
        assert worker.returncode == 1
    else:
        pytest.fail(f"still crashing after {config.max_redeliveries + 2} workers")

    [dead] = await take_dead_letters(config, 1)
    assert dead.message_id == job_id
    assert dead.headers[H_REASON] == "crash loop"
    assert dead.headers[H_ERROR_TYPE] == "CrashLoop"
    assert events(progress, "start") == [job_id] * (config.max_redeliveries + 1)
    assert await queue_depth(work_queue(config.namespace, "default")) == 0


async def close_connections_of(namespace: str) -> int:
    """Have the broker close the connections whose name mentions ``namespace`` (only this
    test's worker, not other tests or programs using the broker); return how many."""
    listing = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "list_connections",
        "pid",
        "client_properties",
        "--quiet",
        "--no-table-headers",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await listing.communicate()
    pids = [line.split("\t", 1)[0] for line in out.decode().splitlines() if namespace in line]
    for pid in pids:
        closer = await asyncio.create_subprocess_exec(
            "rabbitmqctl",
            "close_connection",
            pid,
            "test",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert await closer.wait() == 0
    return len(pids)


gates: dict[str, asyncio.Event] = {}  # one per test: an Event belongs to one event loop
held: set[str] = set()
finished: set[str] = set()


@handler("faults.gated")
async def gated(ctx: JobContext) -> None:
    """Jobs from number ``free`` on wait for the gate."""
    if ctx.payload["i"] >= ctx.payload["free"]:
        held.add(ctx.job_id)
        await gates[ctx.payload["gate"]].wait()
    finished.add(ctx.job_id)


async def test_worker_reconnects_after_the_broker_closes_its_connection(
    settings: Settings, start_worker: StartWorker
) -> None:
    gate = gates[settings.namespace] = asyncio.Event()
    await start_worker(settings, concurrency=8)
    async with Client(settings) as client:
        job_ids = await client.enqueue_many(
            ("faults.gated", {"i": i, "free": 20, "gate": settings.namespace}) for i in range(100)
        )
    await wait_for(lambda: len(finished & set(job_ids)) == 20, what="the first 20 jobs")
    await wait_for(lambda: len(held & set(job_ids)) == 8, what="8 jobs in flight at the gate")

    assert await close_connections_of(settings.namespace) >= 1
    gate.set()
    await wait_for(
        lambda: set(job_ids) <= finished, timeout=40, what="every job after the reconnect"
    )
    depth = work_queue(settings.namespace, "default")

    async def queue_empty() -> bool:
        return await queue_depth(depth) == 0

    await wait_for(queue_empty, what="the work queue to drain")
