"""Profile a Lazarus worker draining no-op jobs: ``python -m bench.profile_worker``.

Enqueues N ``noop`` jobs in a fresh namespace, runs :mod:`bench.lazarus_worker` under
``py-spy record`` (raw collapsed stacks, idle samples included) until the queue is
empty, then prints where the samples fall: by leaf function (self time) and by any
frame (inclusive), for the engine alone and overall.

``--workflow chain`` starts N chains of three steps instead (``--workflow fan_in``: one
fan-out of N items and its fan-in step; both with ``--record``, which steps need) and
profiles until every workflow succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import ROOT, child_env, queue_depth
from bench.lazarus import QUEUE, fresh_namespace
from engine.amqp.port import BrokerPort
from engine.amqp.topology import work_queue
from engine.client import Client
from engine.filters import DeadFilter
from engine.pg.store import Store
from engine.workflows import start_workflow

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*)\)$")


def short(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "python3.11/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{match['func']}"


def analyse(raw: Path, top: int) -> str:
    self_counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        if leaf.endswith(("Selector.select", ":select", ":poll")):
            idle += count
            continue
        self_counts[leaf] += count
        for frame in set(frames):
            inclusive[frame] += count
    busy = total - idle
    lines = [
        f"samples {total}, idle in the selector {idle} ({100 * idle / max(total, 1):.1f} %), "
        f"busy {busy}; percentages below are of busy samples"
    ]

    def block(title: str, counter: collections.Counter[str], keep: str | None) -> None:
        lines.append(f"\n{title}")
        shown = [(k, v) for k, v in counter.most_common() if keep is None or k.startswith(keep)]
        for name, count in shown[:top]:
            lines.append(f"  {100 * count / max(busy, 1):5.1f} %  {name}")

    block("self time, any module", self_counts, None)
    block("inclusive, engine/", inclusive, "engine/")
    block("inclusive, any module", inclusive, None)
    return "\n".join(lines)


async def run(
    n: int,
    concurrency: int,
    queue_type: str,
    rate: int,
    out: Path,
    top: int,
    job_type: str,
    record: bool,
    workflow: str | None = None,
) -> None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    record = record or workflow is not None
    async with fresh_namespace(queue_type, database=record) as (settings, store):
        ns = settings.namespace
        fd, name = tempfile.mkstemp(prefix="bench-profile-runs-")  # fan-ins write their runs
        os.close(fd)
        runs = Path(name)
        async with Client(settings) as client:
            if workflow is None:
                await client.enqueue_many((job_type, None) for _ in range(n))
            else:
                assert store is not None
                job_type = f"{workflow} workflow"
                await start_workflows(store, client.broker, workflow, n)
        env = child_env(
            "", LAZARUS_NAMESPACE=ns, LAZARUS_QUEUE_TYPE=queue_type, BENCH_WF_RUNS=str(runs)
        )
        env.pop("BENCH_REPORT_ADDR")
        spy = await asyncio.create_subprocess_exec(
            py_spy,
            "record",
            "--format",
            "raw",
            "--idle",
            "--nolineno",
            "-r",
            str(rate),
            "-o",
            str(out),
            "--",
            sys.executable,
            "-m",
            "bench.lazarus_worker",
            "--concurrency",
            str(concurrency),
            *(["--record"] if record else []),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        assert spy.stdout is not None
        while (await spy.stdout.readline()).decode().strip() != "ready":
            pass
        started = time.perf_counter()
        while (await queue_depth(work_queue(ns, QUEUE))) != 0:  # noqa: ASYNC110 (polls the broker)
            await asyncio.sleep(0.05)
        dying = job_type == "bench_die"
        while dying and store is not None and await store.count_dead(DeadFilter()) < n:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        while workflow is not None and store is not None and await unfinished(store):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.to_thread(runs.unlink)
        await asyncio.sleep(0.3)  # the last prefetched deliveries
        elapsed = time.perf_counter() - started
        pgrep = await asyncio.create_subprocess_exec(
            "pgrep", "-P", str(spy.pid), stdout=asyncio.subprocess.PIPE
        )
        for pid in (await pgrep.communicate())[0].split():
            os.kill(int(pid), signal.SIGTERM)  # the worker, py-spy's child; py-spy then writes
        await spy.wait()
    print(
        f"{n} {job_type} jobs drained in ~{elapsed:.1f} s ({n / elapsed:,.0f}/s under py-spy at "
        f"{rate} Hz), {queue_type} queue, concurrency {concurrency}; raw stacks: {out}"
    )
    print(analyse(out, top))


async def start_workflows(store: Store, broker: BrokerPort, workflow: str, n: int) -> None:
    """N chains (8 starts at once), or one fan-out of N items; their first jobs queued."""
    from bench.workflows import CHAIN, FAN_IN, STARTS_IN_FLIGHT

    if workflow == "fan_in":
        await start_workflow(store, broker, FAN_IN, list(range(n)))
        return
    window = asyncio.Semaphore(STARTS_IN_FLIGHT)

    async def one() -> None:
        async with window:
            await start_workflow(store, broker, CHAIN)

    await asyncio.gather(*(one() for _ in range(n)))


async def unfinished(store: Store) -> int:
    return int(
        await store.pool.fetchval("SELECT count(*) FROM workflows WHERE state <> 'succeeded'")
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_worker")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--queue-type", default="quorum")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--job-type", default="noop", help="noop, or bench_die (dead letters)")
    parser.add_argument(
        "--record",
        action="store_true",
        help="track states and run the recorder in the worker (throw-away schema); "
        "with bench_die, waits until every dead letter is stored",
    )
    parser.add_argument(
        "--workflow",
        choices=["chain", "fan_in"],
        help="N chains of 3 steps, or one fan-out of N items, instead of N jobs",
    )
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(__file__).resolve().parent / "results" / f"profile-{stamp}.txt"
    out.parent.mkdir(exist_ok=True)
    asyncio.run(
        run(
            args.n,
            args.concurrency,
            args.queue_type,
            args.rate,
            out,
            args.top,
            args.job_type,
            args.record,
            args.workflow,
        )
    )


if __name__ == "__main__":
    main()
