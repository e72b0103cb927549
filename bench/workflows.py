"""``python -m bench.workflows``: what workflows cost, next to plain jobs and to Celery's chord.

Rows, each measured with real worker processes (``python -m bench.lazarus_worker --record``,
as ``lazarus worker``: job states tracked in PostgreSQL, which workflow steps need), in a
fresh namespace (queues, exchanges, schema) removed afterwards:

- overhead: N chains of three no-op steps (a, b after a, c after b) started with no
  worker running, then drained by one worker; against 3N independent tracked no-op jobs
  drained the same way (bench.lazarus.throughput). Steps per second, first to last
  handler run, and the ratio chain / independent.
- fan-out/fan-in: one workflow, a FanOut of ``--items`` no-op items over its input and a
  step after it, started into a running worker, ``--fan-outs`` times in a row. Items per
  second from the start call to the last item's success (``workflow_steps.updated_at``),
  and the delay from that success, and from the last item handler's return, to the start
  of the fan-in handler (wall clock, written by the handler).
- the same fan-in with Celery's chord on a Redis result backend, and then both with 1 %
  of the items failing once and retried once; how often the fan-in ran.

Prints one table per run and writes every figure to ``bench/results/workflows-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import lazarus, peers
from bench.__main__ import RESULTS, attempt, git_state, rabbitmq_version, versions
from bench.common import (
    AMQP_URL,
    Child,
    Collector,
    Disturbed,
    check_undisturbed,
    child_env,
    delete,
    drain,
    python,
    queue_depth,
    rate,
    run_json,
    stop_all,
    unique,
)
from bench.jobs import FLAKY_EVERY, WF_RETRY_DELAY
from bench.lazarus import QUEUE, fresh_namespace, start_worker
from engine import loop as event_loop
from engine.amqp.topology import delay_queue, delay_tier_ms, work_queue
from engine.client import Client
from engine.pg.store import Store
from engine.settings import load_settings
from engine.workflows import INPUT, FanOut, Step, Workflow, start_workflow

SECTIONS = ("overhead", "fanout", "chord")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
QUEUE_TYPE = "quorum"  # Lazarus's default, as the tracked row of python -m bench
STARTS_IN_FLIGHT = 8  # workflows started at once for the overhead row (the store's pool)
SETTLE_S = 2.0  # after a fan-in ran, how long a second run of it would have to show up

CHAIN = Workflow(
    "bench_chain",
    [
        Step("a", "wf_step"),
        Step("b", "wf_step", after=("a",)),
        Step("c", "wf_step", after=("b",)),
    ],
    queue=QUEUE,
)
FAN_IN = Workflow(
    "bench_fan_in",
    [FanOut("items", "wf_item", items_from=INPUT), Step("join", "wf_join", after=("items",))],
    queue=QUEUE,
)
FAN_IN_FLAKY = Workflow(
    "bench_fan_in_flaky",
    [
        FanOut("items", "wf_item_flaky", items_from=INPUT),
        Step("join", "wf_join", after=("items",)),
    ],
    queue=QUEUE,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.workflows", description=__doc__)
    parser.add_argument("--items", type=int, default=10_000, help="items of the fan-out")
    parser.add_argument(
        "--chains", type=int, default=1_500, help="chains of 3 steps (against 3x as many jobs)"
    )
    parser.add_argument("--fan-outs", type=int, default=5, help="fan-outs in a row per run")
    parser.add_argument("--runs", type=int, default=1, help="repeat everything; all runs shown")
    parser.add_argument("--concurrency", type=int, default=256, help="Lazarus worker concurrency")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma list of {','.join(SECTIONS)}"
    )
    parser.add_argument("--show", metavar="JSON", help="print the tables of a saved result")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}")
    if args.items < FLAKY_EVERY or args.chains < 2:
        parser.error(f"--items must be at least {FLAKY_EVERY}, --chains at least 2")
    return args


# Overhead: chains of three steps against independent tracked jobs.


async def chains(collector: Collector, n: int, concurrency: int) -> dict[str, Any]:
    """Start N chains with no worker running (their first steps wait in the queue), then
    time one worker until all 3N steps ran; every workflow must have succeeded."""
    async with fresh_namespace(QUEUE_TYPE) as (settings, store):
        assert store is not None
        ns = settings.namespace
        async with Client(settings) as client:
            window = asyncio.Semaphore(STARTS_IN_FLIGHT)

            async def one() -> None:
                async with window:
                    await start_workflow(store, client.broker, CHAIN)

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            start_s = time.perf_counter() - started
        queued = await queue_depth(work_queue(ns, QUEUE))
        if queued != n:
            raise Disturbed(f"chains: {queued} first steps queued for {n} started")
        collector.reset()
        children: list[Child] = []
        try:
            children.append(await start_worker(collector, ns, QUEUE_TYPE, concurrency, record=True))
            first, last, left = await drain(collector, children, 3 * n, work_queue(ns, QUEUE))
        finally:
            await stop_all(children)
        succeeded = await store.pool.fetchval(
            "SELECT count(*) FROM workflows WHERE state = 'succeeded'"
        )
    return {
        "chains": n,
        "steps": 3 * n,
        "concurrency": concurrency,
        "start_s": start_s,
        "starts_per_s": rate(n, start_s),
        "process_s": last - first,
        "steps_per_s": rate(3 * n - 1, last - first),
        "workflows_succeeded": succeeded,
        "left_in_queue": left,
    }


async def independent(collector: Collector, n: int, concurrency: int) -> dict[str, Any]:
    """3N tracked no-op jobs, as the tracked row of ``python -m bench``."""
    row = await lazarus.throughput(collector, n, QUEUE_TYPE, concurrency, tracked=True)
    return row | {"steps_per_s": row["process_per_s"]}


# Fan-out and fan-in.


class RunLog:
    """The file the fan-in handlers (Lazarus's and Celery's) append their runs to."""

    def __init__(self) -> None:
        fd, name = tempfile.mkstemp(prefix="bench-wf-runs-", suffix=".txt")
        os.close(fd)
        self.path = Path(name)

    def lines(self, key: str) -> list[list[str]]:
        text = self.path.read_text()
        return [parts for line in text.splitlines() if (parts := line.split())[0] == key]

    async def wait(self, key: str, child: Child, timeout: float = 300.0) -> list[list[str]]:
        deadline = time.monotonic() + timeout
        while not (found := self.lines(key)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{key}: no run of the fan-in after {timeout:.0f} s")
            if child.forced_close():
                raise Disturbed(f"{child.name}: broker forced the connection closed mid-run")
            if child.proc.returncode is not None:
                raise RuntimeError(f"{child.name} exited; see {child.log_path}")
            await asyncio.sleep(0.02)
        return found

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


async def fan_ins(
    collector: Collector, items: int, repeats: int, concurrency: int, *, flaky: bool = False
) -> dict[str, Any]:
    """Start ``repeats`` fan-outs of ``items``, one after the other, into one running worker."""
    workflow = FAN_IN_FLAKY if flaky else FAN_IN
    log = RunLog()
    try:
        async with fresh_namespace(QUEUE_TYPE) as (settings, store):
            assert store is not None
            ns = settings.namespace
            collector.reset()
            children: list[Child] = []
            ids: list[str] = []
            rounds: list[dict[str, Any]] = []
            try:
                child = await start_worker(
                    collector, ns, QUEUE_TYPE, concurrency, record=True, BENCH_WF_RUNS=str(log.path)
                )
                children.append(child)
                async with Client(settings) as client:
                    for _ in range(repeats):
                        done_before = collector.done
                        started = time.time()
                        wf = await start_workflow(
                            store, client.broker, workflow, list(range(items))
                        )
                        start_s = time.time() - started
                        ids.append(wf.workflow_id)
                        [run] = (await log.wait(wf.workflow_id, child))[:1]
                        await collector.wait(done_before + items, what="items", watch=child)
                        rounds.append(
                            await fan_in_figures(store, wf.workflow_id, items, started, run)
                            | {"start_s": start_s, "last_item_handler": collector.span()[1]}
                        )
                await asyncio.sleep(SETTLE_S)
            finally:
                await stop_all(children)
            left = await queue_depth(work_queue(ns, QUEUE))
            check_undisturbed(children[0], left)
            for round_, workflow_id in zip(rounds, ids, strict=True):
                runs = log.lines(workflow_id)
                round_["fan_in_runs"] = len(runs)
                round_["delay_handler_s"] = float(runs[0][1]) - round_.pop("last_item_handler")
                round_["state"] = await store.pool.fetchval(
                    "SELECT state FROM workflows WHERE workflow_id = $1", workflow_id
                )
            if flaky:
                await delete([delay_queue(ns, QUEUE, delay_tier_ms(WF_RETRY_DELAY))])
    finally:
        log.remove()
    return summarize(rounds, items, concurrency, flaky) | {"left_in_queue": left}


async def fan_in_figures(
    store: Store, workflow_id: str, items: int, started: float, run: list[str]
) -> dict[str, Any]:
    """One fan-out's figures from PostgreSQL (its items' successes) and the fan-in's run."""
    row = await store.pool.fetchrow(
        """SELECT count(*) AS n, min(updated_at) AS first, max(updated_at) AS last
             FROM workflow_steps
            WHERE workflow_id = $1 AND parent = 'items' AND state = 'succeeded'""",
        workflow_id,
    )
    retried = await store.pool.fetchval(
        "SELECT count(*) FROM jobs WHERE workflow_id = $1 AND attempt > 0", workflow_id
    )
    if row["n"] != items:
        raise RuntimeError(f"{workflow_id}: {row['n']} of {items} items succeeded")
    first, last = row["first"].timestamp(), row["last"].timestamp()
    fan_in_start = float(run[1])
    return {
        "items_per_s": rate(items, last - started),
        "items_per_s_running": rate(items - 1, last - first),
        "to_last_item_s": last - started,
        "delay_s": fan_in_start - last,
        "retried_items": retried,
    }


def summarize(
    rounds: list[dict[str, Any]], items: int, concurrency: int, flaky: bool
) -> dict[str, Any]:
    delays = [r["delay_s"] for r in rounds]
    return {
        "items": items,
        "concurrency": concurrency,
        "flaky": flaky,
        "rounds": rounds,
        "items_per_s": statistics.median(r["items_per_s"] for r in rounds),
        "items_per_s_running": statistics.median(r["items_per_s_running"] for r in rounds),
        "start_s": statistics.median(r["start_s"] for r in rounds),
        "delay_median_s": statistics.median(delays),
        "delay_max_s": max(delays),
        "delay_handler_median_s": statistics.median(r["delay_handler_s"] for r in rounds),
        "fan_in_runs": [r["fan_in_runs"] for r in rounds],
        "retried_items": [r["retried_items"] for r in rounds],
        "states": [r["state"] for r in rounds],
    }


# Celery's chord.

CELERY_CONFIG = (
    f"pool={peers.CELERY_POOL} -c {peers.CELERY_CONCURRENCY}, prefetch {peers.PREFETCH}, "
    "acks_late, confirm_publish, persistent, classic queue, Redis result backend "
    f"({REDIS_URL})"
)


def celery_worker_argv(queue: str) -> list[str]:
    """The worker of bench.peers (same pool, concurrency and flags) on the chord app."""
    return python(
        "-m",
        "celery",
        "-A",
        "bench.peers.celery_chord_app",
        "worker",
        "-P",
        peers.CELERY_POOL,
        "-c",
        str(peers.CELERY_CONCURRENCY),
        "-Q",
        queue,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "WARNING",
    )


async def celery_chord(collector: Collector, items: int, *, flaky: bool = False) -> dict[str, Any]:
    """A running Celery worker; ``chord(group(item.s(i) ...), join.s(tag))`` from a producer
    process; until the join ran and every item succeeded, then SETTLE_S more."""
    queue = unique("bench_celery_chord")
    prefix = f"{queue}:"
    log = RunLog()
    env = child_env(
        collector.address,
        BENCH_QUEUE=queue,
        BENCH_AMQP_URL=AMQP_URL,
        BENCH_REDIS_URL=REDIS_URL,
        BENCH_REDIS_PREFIX=prefix,
        BENCH_WF_RUNS=str(log.path),
        BENCH_CELERY_PREFETCH_MULTIPLIER=str(max(1, peers.PREFETCH // peers.CELERY_CONCURRENCY)),
    )
    app = python("-m", "bench.peers.celery_chord_app")
    try:
        collector.reset()
        child = await Child.start("celery-chord", celery_worker_argv(queue), env)
        try:
            await run_json([*app, "ping"], env)
            await log.wait("ping", child, timeout=60)
            tag = unique("chord")
            produced = await run_json(
                [*app, "chord", str(items), tag, *(["--flaky"] if flaky else [])],
                env,
                timeout=60 + items / 100,
            )
            [run] = (await log.wait(tag, child))[:1]
            await collector.wait(items, what="items", watch=child)
            await asyncio.sleep(SETTLE_S)
        finally:
            await child.stop()
        left = await queue_depth(queue)
        check_undisturbed(child, left)
        _, last = collector.span()
        started = float(produced["started"])
        fan_in_start = float(run[1])
        runs = log.lines(tag)
    finally:
        await delete([queue], [queue])
        await asyncio.to_thread(forget_redis_keys, prefix)
        log.remove()
    return {
        "items": items,
        "flaky": flaky,
        "config": CELERY_CONFIG,
        "publish_s": produced["publish_s"],
        "items_per_s": rate(items, last - started),
        "to_last_item_s": last - started,
        "delay_handler_s": fan_in_start - last,
        "fan_in_runs": len(runs),
        "results_given": [int(r[2]) for r in runs],
        "items_done": collector.done,
        "left_in_queue": left,
    }


def forget_redis_keys(prefix: str) -> int:
    """Delete the chord's keys (results, counters) in Redis; how many there were."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        return len(keys)
    finally:
        client.close()


# The run, the table, the JSON.


async def one_run(args: argparse.Namespace, collector: Collector) -> dict[str, Any]:
    out: dict[str, Any] = {}

    async def measure(key: str, label: str, func: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        out[key] = await attempt(label, func)

    if "overhead" in args.sections:
        await measure(
            "chains",
            f"{args.chains} chains of 3 steps",
            lambda: chains(collector, args.chains, args.concurrency),
        )
        await measure(
            "independent",
            f"{3 * args.chains} independent tracked jobs",
            lambda: independent(collector, 3 * args.chains, args.concurrency),
        )
    if "fanout" in args.sections:
        await measure(
            "fan_in",
            f"{args.fan_outs} fan-outs of {args.items} items",
            lambda: fan_ins(collector, args.items, args.fan_outs, args.concurrency),
        )
    if "chord" in args.sections:
        await measure(
            "celery_chord",
            f"Celery chord of {args.items} items",
            lambda: celery_chord(collector, args.items),
        )
        await measure(
            "fan_in_flaky",
            f"fan-out of {args.items} items, 1 % failing once",
            lambda: fan_ins(collector, args.items, 1, args.concurrency, flaky=True),
        )
        await measure(
            "celery_chord_flaky",
            f"Celery chord of {args.items} items, 1 % failing once",
            lambda: celery_chord(collector, args.items, flaky=True),
        )
    return out


def num(value: Any, digits: int = 0) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:,.{digits}f}"


def ratio(a: Any, b: Any) -> str:
    if not all(isinstance(v, int | float) and v > 0 for v in (a, b)):
        return "-"
    return f"{a / b:.2f}x"


LAZARUS_SETUP = (
    "Lazarus: 1 worker proc, concurrency = prefetch {concurrency}, quorum, states tracked, "
    "confirmed publishes, ack after the success is written in PostgreSQL"
)
CELERY_SETUP = (
    f"Celery: 1 worker proc, {peers.CELERY_POOL} -c {peers.CELERY_CONCURRENCY}, prefetch "
    f"{peers.PREFETCH}, acks_late, confirm_publish, classic, Redis results"
)


def table_rows(run: dict[str, Any], concurrency: int) -> list[tuple[str, ...]]:
    """(row, setup, figure, result) per measurement of one run."""
    rows: list[tuple[str, ...]] = []
    lazarus_setup = LAZARUS_SETUP.format(concurrency=concurrency)

    def failed(key: str, name: str, setup: str) -> bool:
        row = run.get(key)
        if row is None:
            return True
        if "error" in row:
            rows.append((name, setup, "-", f"error: {row['error']}"))
            return True
        return False

    c, j = run.get("chains", {}), run.get("independent", {})
    if not failed("chains", "overhead: chains a->b->c", lazarus_setup):
        rows.append(
            (
                "overhead: chains a->b->c",
                lazarus_setup,
                f"{num(c['steps_per_s'])} steps/s",
                f"{c['chains']:,} chains started first ({num(c['starts_per_s'])}/s), all "
                f"{c['workflows_succeeded']:,} succeeded; chain/independent "
                f"{ratio(c['steps_per_s'], j.get('steps_per_s'))} (target 0.80x)",
            )
        )
    if not failed("independent", "overhead: independent jobs", lazarus_setup):
        rows.append(
            (
                "overhead: independent jobs",
                lazarus_setup,
                f"{num(j['steps_per_s'])} jobs/s",
                f"{j['n']:,} no-op jobs (enqueue_many) first; {j['succeeded_rows']:,} rows "
                f"succeeded, left {j['left_in_queue']}",
            )
        )
    for key, name in (("fan_in", "fan-out/fan-in"), ("fan_in_flaky", "fan-in, 1 % fail once")):
        f = run.get(key, {})
        if failed(key, f"{name}: Lazarus", lazarus_setup):
            continue
        rows.append(
            (
                f"{name}: Lazarus",
                lazarus_setup,
                f"{num(f['items_per_s'])} items/s",
                f"{len(f['rounds'])} x {f['items']:,} items, start call {f['start_s']:.1f} s; "
                f"to fan-in: median {num(f['delay_median_s'] * 1000)} ms, max "
                f"{num(f['delay_max_s'] * 1000)} ms (from last item handler "
                f"{num(f['delay_handler_median_s'] * 1000)} ms); fan-in ran "
                f"{'/'.join(map(str, f['fan_in_runs']))}; retried "
                f"{'/'.join(map(str, f['retried_items']))}",
            )
        )
    for key, name in (
        ("celery_chord", "fan-out/fan-in"),
        ("celery_chord_flaky", "fan-in, 1 % fail once"),
    ):
        f = run.get(key, {})
        if failed(key, f"{name}: Celery chord", CELERY_SETUP):
            continue
        lazarus_rate = run.get(key.replace("celery_chord", "fan_in"), {}).get("items_per_s")
        rows.append(
            (
                f"{name}: Celery chord",
                CELERY_SETUP,
                f"{num(f['items_per_s'])} items/s",
                f"1 x {f['items']:,} items, apply_async {f['publish_s']:.1f} s; to body (from "
                f"last item handler) {num(f['delay_handler_s'] * 1000)} ms; body ran "
                f"{f['fan_in_runs']}; Lazarus/Celery {ratio(lazarus_rate, f['items_per_s'])}",
            )
        )
    return rows


def render(rows: list[tuple[str, ...]]) -> str:
    header = ("row", "setup", "figure", "result")
    cells = [header, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_tables(runs: list[dict[str, Any]], args: dict[str, Any], loop: str) -> list[Any]:
    tables = []
    for index, run in enumerate(runs, 1):
        rows = table_rows(run, args["concurrency"])
        tables.append(rows)
        print(
            f"\nLazarus workflows bench, run {index} of {len(runs)}: items={args['items']}, "
            f"chains={args['chains']}, {os.cpu_count()} CPUs, event loop {loop}"
        )
        print(render(rows))
    return tables


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.show:  # the tables of a saved run, without measuring
        saved = json.loads(await asyncio.to_thread(Path(args.show).read_text))
        loop = saved["machine"]["event_loop"].split(".")[0]
        print_tables(saved["runs"], saved["args"], loop)
        return 0
    collector = await Collector.open()
    started = datetime.now(UTC)
    runs = []
    try:
        for index in range(args.runs):
            print(f"run {index + 1} of {args.runs}", file=sys.stderr, flush=True)
            runs.append(await one_run(args, collector))
    finally:
        collector.close()
    loop = type(asyncio.get_running_loop()).__module__
    tables = print_tables(runs, vars(args), loop.split(".")[0])
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"workflows-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    document = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "args": dict(vars(args)),
        "machine": {
            "event_loop": loop,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "rabbitmq": await rabbitmq_version(),
        },
        "setup": {
            "lazarus": LAZARUS_SETUP.format(concurrency=args.concurrency),
            "celery": CELERY_CONFIG,
        },
        "versions": versions() | {"redis": _version("redis")},
        "git": git_state(),
        "runs": runs,
        "tables": [
            [dict(zip(("row", "setup", "figure", "result"), r, strict=True)) for r in t]
            for t in tables
        ],
    }
    path.write_text(json.dumps(document, indent=2, default=str))
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    print(f"\nraw figures: {shown}")
    return 0


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(event_loop.run(main(), load_settings().event_loop))
