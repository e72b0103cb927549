"""Chaos run: the promises hold while workers are killed and PostgreSQL drops connections.

``python -m bench.chaos [--n 50000] [--workers 2] [--kill-every 3] [--pg-every 7]``
(on demand: a minute or more; never part of CI).

N jobs wait in a fresh namespace: 70 % ``chaos_ok`` (succeed after up to 40 ms),
15 % ``chaos_flaky`` (fail their first attempt, succeed on the broker retry), 15 %
``chaos_die`` (fail permanently). Worker processes (``bench.lazarus_worker --record``:
states tracked, deaths stored, recorder and relay, as ``lazarus worker``) drain them
while, every
``--kill-every`` seconds (jittered), one of them is killed with SIGKILL and a new one
started, and every ``--pg-every`` seconds PostgreSQL terminates the workers'
connections. Each handler run appends a line to a file with one unbuffered write.

Beside them, ``--workflows`` workflows (default 40) each fan out over ``--items`` work
items (default 100; one in ten fails its first attempt), then a fan-in reads every
item's result and a last step reads the fan-in's; both record what they saw.

When every job has its final state and every workflow is over (or nothing changed for
``--settle`` seconds with the work queue empty, or ``--timeout`` passes) the run stops
and checks:
- every job's row holds its expected final state (ok and flaky: succeeded, die: dead);
- every dying job has its dead-letter row, and no other job has one;
- every job ran at least once (nothing lost), and how many runs were repeats;
- the work queue, the delay queues and the recorder's queue are empty;
- every workflow succeeded, every work item ran, every fan-in and last step ran and saw
  everything it waits on succeeded; how many fan-ins ran more than once.
For every job found missing (its row says DEAD, or it was meant to die, and it has no
dead-letter row) it prints the job's history: its jobs row, its runs as the handlers
recorded them, and its copies on ``<ns>.dead.retained`` and on the recorder's queue
(read without acking, so they stay where they were).
It prints the report as JSON, writes it to bench/results/chaos-<UTC time>.json, and
exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg

from bench.common import AMQP_URL, ROOT, Child, child_env, python, queue_depth
from bench.jobs import CHAOS_FLOW
from bench.lazarus import QUEUE, fresh_namespace
from engine.amqp.topology import recorder_queue, retained_queue, work_queue
from engine.client import Client
from engine.settings import Settings
from engine.workflows import start_workflow

MIX = {"chaos_ok": 0.70, "chaos_flaky": 0.15, "chaos_die": 0.15}
FINAL_STATE = {"chaos_ok": "succeeded", "chaos_flaky": "succeeded", "chaos_die": "dead"}
EXPECTED_RUNS = {"chaos_ok": 1, "chaos_flaky": 2, "chaos_die": 1}
APP_NAME = "lazarus-chaos"  # the workers' PostgreSQL connections, the ones terminated


class Workers:
    """The worker processes of the run; kills one and starts its replacement."""

    def __init__(self, env: dict[str, str], concurrency: int) -> None:
        self.env = env
        self.concurrency = concurrency
        self.children: list[Child] = []
        self.started = 0
        self.began = time.monotonic()
        self.began_at = datetime.now(UTC)  # the same moment on the clock of updated_at
        # Every worker of the run: (child, seconds into the run it was killed, or None).
        self.history: list[tuple[Child, float | None]] = []

    async def start(self) -> None:
        self.started += 1
        argv = python(
            "-m", "bench.lazarus_worker", "--concurrency", str(self.concurrency), "--record"
        )
        child = await Child.start(f"chaos-worker-{self.started}", argv, self.env)
        await child.wait_line("ready")
        self.children.append(child)
        self.history.append((child, None))

    async def kill_one(self) -> None:
        child = self.children.pop(random.randrange(len(self.children)))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        killed_at = round(time.monotonic() - self.began, 2)
        self.history = [(c, killed_at if c is child else k) for c, k in self.history]
        await child.proc.wait()
        await self.start()

    async def stop(self) -> None:
        for child in self.children:
            await child.stop()
        self.children.clear()


async def connect(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(
        settings.database_dsn, server_settings={"search_path": settings.namespace}
    )


async def terminate_worker_connections(settings: Settings) -> int:
    conn = await connect(settings)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            APP_NAME,
        )
        return len(rows)
    finally:
        await conn.close()


async def progress(settings: Settings) -> tuple[int, int, int]:
    """(jobs of their own in a final state, dead-letter rows, workflows over); (-1, -1, -1)
    while PostgreSQL refuses."""
    try:
        conn = await connect(settings)
    except (OSError, asyncpg.PostgresError):
        return -1, -1, -1
    try:
        final = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE state IN ('succeeded', 'dead') AND workflow_id IS NULL"
        )
        dead = await conn.fetchval("SELECT count(*) FROM dead_letters")
        over = await conn.fetchval(
            "SELECT count(*) FROM workflows WHERE state IN ('succeeded', 'failed', 'cancelled')"
        )
        return int(final), int(dead), int(over)
    finally:
        await conn.close()


def delay_queue_messages(ns: str) -> int:
    """Messages in the namespace's delay queues (their names are made on demand)."""
    listed = subprocess.run(
        ["rabbitmqctl", "list_queues", "name", "messages", "--quiet", "--no-table-headers"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.split("\n")
    total = 0
    for line in listed:
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith(f"{ns}.delay."):
            total += int(parts[1])
    return total


JOB_COLUMNS = (
    "state",
    "generation",
    "seq",
    "attempt",
    "redeliveries",
    "worker",
    "token",
    "cause",
    "error_type",
    "started_at",
    "updated_at",
)
COPY_HEADERS = (
    "x-lazarus-reason",
    "x-lazarus-worker",
    "x-lazarus-died-at",
    "x-lazarus-attempts",
    "x-lazarus-redeliveries",
    "x-lazarus-error-type",
)


def _plain(value: Any) -> Any:
    """A header value as JSON can print it (bytes as text, x-death tables as lists)."""
    if isinstance(value, bytes | bytearray):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


async def peek_copies(queue: str, job_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The copies of ``job_ids`` waiting on ``queue``, read without losing any.

    Every ready message is consumed on a channel that never acks; closing the channel
    hands them all back to the queue (a classic queue keeps their order, a quorum queue
    counts one more delivery, which queues without a delivery limit ignore).
    """
    found: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in job_ids}
    depth = await queue_depth(queue)
    if not depth:
        return found
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=0)  # unlimited: nothing is acked
        amqp_queue = await channel.declare_queue(queue, passive=True)
        seen = 0
        done = asyncio.Event()

        async def look(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            seen += 1
            job_id = _job_id_of(message)
            if job_id in found:
                headers = message.headers or {}
                copy = {h: _plain(headers[h]) for h in COPY_HEADERS if h in headers}
                if "x-death" in headers:
                    copy["x-death"] = _plain(headers["x-death"])
                copy["message_id"] = message.message_id
                copy["redelivered"] = message.redelivered
                found[job_id].append(copy)
            if seen >= depth:
                done.set()

        tag = await amqp_queue.consume(look, no_ack=False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=60)
        await amqp_queue.cancel(tag)
        await channel.close()  # unacked: every message goes back to the queue
    finally:
        await connection.close()
    return found


def _job_id_of(message: aio_pika.abc.AbstractIncomingMessage) -> str | None:
    """The job id of a copy: its message id, else the body's ``id``."""
    if message.message_id:
        return message.message_id
    try:
        body = json.loads(message.body)
    except ValueError:
        return None
    return body.get("id") if isinstance(body, dict) else None


def worker_lines(workers: Workers, job_ids: set[str]) -> dict[str, list[str]]:
    """The workers' log lines that name one of ``job_ids``, each with its worker's pid."""
    found: dict[str, list[str]] = {job_id: [] for job_id in job_ids}
    for child, _ in workers.history:
        with contextlib.suppress(OSError):
            for line in child.log_path.read_text(errors="replace").splitlines():
                for job_id in job_ids:
                    if job_id in line:
                        found[job_id].append(f"[pid {child.pid}] {line[:300]}")
    return found


def workers_seen(workers: Workers) -> dict[str, str]:
    """Every worker pid of the run: killed (when, from the run's start) or stopped at the end."""
    seen = {"run began at": workers.began_at.isoformat()}
    for child, killed in workers.history:
        seen[str(child.pid)] = "stopped at the end" if killed is None else f"SIGKILL at {killed} s"
    return seen


async def missing_histories(
    settings: Settings, missing: list[str], runs_file: Path, workers: Workers
) -> dict[str, dict[str, Any]]:
    """What is known of each job that should have a dead-letter row and has none."""
    wanted = set(missing)
    conn = await connect(settings)
    try:
        job_rows = await conn.fetch("SELECT * FROM jobs WHERE job_id = ANY($1::text[])", missing)
        dead_rows = await conn.fetch(
            "SELECT job_id, generation, status, worker, reason, died_at FROM dead_letters"
            " WHERE job_id = ANY($1::text[])",
            missing,
        )
    finally:
        await conn.close()
    runs: dict[str, list[str]] = {job_id: [] for job_id in missing}
    for line in (await asyncio.to_thread(runs_file.read_text)).splitlines():
        parts = line.split(maxsplit=1)
        if parts and parts[0] in wanted:
            runs[parts[0]].append(parts[1] if len(parts) > 1 else "")
    ns = settings.namespace
    retained = await peek_copies(retained_queue(ns), wanted)
    recorder = await peek_copies(recorder_queue(ns), wanted)
    rows = {r["job_id"]: r for r in job_rows}
    logged = await asyncio.to_thread(worker_lines, workers, wanted)
    histories: dict[str, dict[str, Any]] = {}
    for job_id in missing:
        row = rows.get(job_id)
        histories[job_id] = {
            "job_row": {c: row[c] for c in JOB_COLUMNS} if row is not None else None,
            "dead_letter_rows_any_generation": [
                dict(r) for r in dead_rows if r["job_id"] == job_id
            ],
            "runs (attempt generation)": runs[job_id],
            "retained_copies": len(retained[job_id]),
            "retained": retained[job_id],
            "recorder_copies": len(recorder[job_id]),
            "recorder": recorder[job_id],
            "worker_log_lines": logged[job_id][:40],
        }
    return histories


def print_histories(histories: dict[str, dict[str, Any]]) -> None:
    for job_id, history in histories.items():
        print(f"missing dead letter: job {job_id}")
        print(json.dumps(history, indent=2, default=str))


async def verify(
    settings: Settings, expected: dict[str, str], runs_file: Path, workers: Workers
) -> dict[str, Any]:
    conn = await connect(settings)
    try:
        rows = await conn.fetch("SELECT job_id, state, redeliveries, worker, updated_at FROM jobs")
        states = {r["job_id"]: r["state"] for r in rows}
        details = {r["job_id"]: r for r in rows}
        dead_rows = await conn.fetch("SELECT job_id, generation, reason FROM dead_letters")
    finally:
        await conn.close()
    wrong_state = {
        job_id: states.get(job_id)
        for job_id, kind in expected.items()
        if states.get(job_id) != FINAL_STATE[kind]
    }
    dead_ids = collections.Counter(r["job_id"] for r in dead_rows)
    dying = {job_id for job_id, kind in expected.items() if kind == "chaos_die"}
    runs: collections.Counter[str] = collections.Counter()
    for line in (await asyncio.to_thread(runs_file.read_text)).splitlines():
        runs[line.split()[0]] += 1
    repeats = {
        job_id: runs[job_id] - EXPECTED_RUNS[kind]
        for job_id, kind in expected.items()
        if runs[job_id] > EXPECTED_RUNS[kind]
    }
    ns = settings.namespace
    leftovers = {
        "work_queue": await queue_depth(work_queue(ns, QUEUE)),
        "recorder_queue": await queue_depth(recorder_queue(ns)),
        "delay_queues": await asyncio.to_thread(delay_queue_messages, ns),
    }
    retained = await queue_depth(retained_queue(ns)) or 0
    # Counted before the copies are read: reading hands them back to their queues.
    missing = sorted(
        job_id
        for job_id, kind in expected.items()
        if (kind == "chaos_die" or states.get(job_id) == "dead") and job_id not in dead_ids
    )
    histories = (
        await missing_histories(settings, missing[:20], runs_file, workers) if missing else {}
    )
    print_histories(histories)
    checks = {
        "every job in its final state": not wrong_state,
        "every dying job has its dead-letter row": dying <= set(dead_ids),
        "no other job has a dead-letter row": set(dead_ids) <= dying,
        "one row per dying job": all(n == 1 for n in dead_ids.values()),
        "every job ran (nothing lost)": all(runs[j] >= 1 for j in expected),
        "queues empty": not any(leftovers.values()),
    }
    return {
        "checks": checks,
        "jobs": dict(collections.Counter(expected.values())),
        "wrong_state": {
            job_id: {
                "state": state,
                "kind": expected[job_id],
                "runs": runs[job_id],
                "redeliveries": details[job_id]["redeliveries"] if job_id in details else None,
                "worker": details[job_id]["worker"] if job_id in details else None,
                "updated_at": details[job_id]["updated_at"] if job_id in details else None,
            }
            for job_id, state in list(wrong_state.items())[:20]
        },
        "wrong_state_count": len(wrong_state),
        "missing_dead_letters": len(missing),
        "missing_histories": histories,
        "workers_seen": workers_seen(workers) if missing else {},
        "dead_rows": len(dead_rows),
        "dead_reasons": dict(collections.Counter(r["reason"] for r in dead_rows)),
        "dead_letter_copies_retained": retained,
        "runs": sum(runs.values()),
        "jobs_run_more_than_expected": len(repeats),
        "repeat_runs": sum(repeats.values()),
        "leftovers": leftovers,
    }


async def verify_workflows(
    settings: Settings, flows: list[str], items: int, runs_file: Path
) -> dict[str, Any]:
    """The workflow mix's invariants: every workflow succeeded; every fan-in run saw all
    its items succeeded (no step before what it waits on), and so did every last step;
    every item ran; how often a fan-in ran (more than once only if its own run was cut
    short by a kill)."""
    conn = await connect(settings)
    try:
        states = dict(
            await conn.fetch(
                "SELECT workflow_id, state FROM workflows WHERE workflow_id = ANY($1)", flows
            )
        )
    finally:
        await conn.close()
    joins: collections.Counter[str] = collections.Counter()
    ends: collections.Counter[str] = collections.Counter()
    early: list[str] = []
    runs: collections.Counter[str] = collections.Counter()
    for line in (await asyncio.to_thread(runs_file.read_text)).splitlines():
        word = line.split()
        if word[0] == "JOIN":
            joins[word[1]] += 1
            if int(word[2]) != items or int(word[3]) != sum(range(items)):
                early.append(line)
        elif word[0] == "END":
            ends[word[1]] += 1
            if int(word[2]) != items:
                early.append(line)
        else:
            runs[word[0]] += 1
    item_jobs = {f"{w}/0/items[{i}]" for w in flows for i in range(items)}
    return {
        "checks": {
            "every workflow succeeded": all(states.get(w) == "succeeded" for w in flows),
            "every fan-in saw all its items succeeded": not early,
            "every fan-in and last step ran": all(joins[w] and ends[w] for w in flows),
            "every work item ran": all(runs[j] for j in item_jobs),
        },
        "workflows": len(flows),
        "items_each": items,
        "states": dict(collections.Counter(states.get(w, "missing") for w in flows)),
        "fan_in_runs": sum(joins.values()),
        "fan_ins_run_more_than_once": sum(1 for w in flows if joins[w] > 1),
        "item_runs": sum(runs[j] for j in item_jobs),
        "early_runs": early[:10],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    random.seed(args.seed)
    async with fresh_namespace(args.queue_type) as (settings, store):
        assert store is not None
        ns = settings.namespace
        runs_file = Path(tempfile.gettempdir()) / f"chaos-runs-{ns}.txt"
        runs_file.unlink(missing_ok=True)
        runs_file.touch()
        kinds = random.choices(list(MIX), weights=list(MIX.values()), k=args.n)
        async with Client(settings) as client:
            ids = await client.enqueue_many((kind, None) for kind in kinds)
            flows = [
                (
                    await start_workflow(store, client.broker, CHAOS_FLOW, list(range(args.items)))
                ).workflow_id
                for _ in range(args.workflows)
            ]
        expected = dict(zip(ids, kinds, strict=True))
        dying = sum(1 for kind in kinds if kind == "chaos_die")

        env = child_env(
            "",
            LAZARUS_NAMESPACE=ns,
            LAZARUS_QUEUE_TYPE=args.queue_type,
            LAZARUS_DATABASE_URL=f"{settings.database_dsn}?application_name={APP_NAME}",
            BENCH_CHAOS_RUNS=str(runs_file),
        )
        env.pop("BENCH_REPORT_ADDR")
        workers = Workers(env, args.concurrency)
        kills = terminations = 0
        began = workers.began = time.monotonic()
        workers.began_at = datetime.now(UTC)
        next_kill = began + random.uniform(0.5, 1.5) * args.kill_every
        next_pg = began + args.pg_every if args.pg_every else float("inf")
        try:
            for _ in range(args.workers):
                await workers.start()
            seen, changed = (-1, -1, -1), began
            while True:
                final, dead, over = await progress(settings)
                if final >= args.n and dead >= dying and over >= args.workflows:
                    break
                now = time.monotonic()
                if (final, dead, over) != seen:
                    seen, changed = (final, dead, over), now
                if now - changed > args.settle and not await queue_depth(work_queue(ns, QUEUE)):
                    print(f"stalled: {final} of {args.n} final, {dead} of {dying} dead rows")
                    break
                if now - began > args.timeout:
                    print(f"timeout: {final} of {args.n} final, {dead} of {dying} dead rows")
                    break
                if args.kill_every and now >= next_kill:
                    await workers.kill_one()
                    kills += 1
                    next_kill = time.monotonic() + random.uniform(0.5, 1.5) * args.kill_every
                if now >= next_pg:
                    terminations += await terminate_worker_connections(settings)
                    next_pg = now + args.pg_every
                await asyncio.sleep(0.2)
            elapsed = time.monotonic() - began
            # Copies still in flight (a retry published twice around a kill) reach the
            # workers, which drop them as duplicates; then the queues must be empty.
            for _ in range(int(args.settle * 2)):
                waiting = await queue_depth(work_queue(ns, QUEUE)) or await asyncio.to_thread(
                    delay_queue_messages, ns
                )
                if not waiting:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)  # acks settle
        finally:
            await workers.stop()
        report = await verify(settings, expected, runs_file, workers)
        flow_report = await verify_workflows(settings, flows, args.items, runs_file)
        report["checks"] |= flow_report.pop("checks")
        report["workflows"] = flow_report
        if all(report["checks"].values()):
            runs_file.unlink(missing_ok=True)
        else:
            report["runs_file"] = str(runs_file)
    return {
        "n": args.n,
        "queue_type": args.queue_type,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "kill_every_s": args.kill_every,
        "pg_every_s": args.pg_every,
        "seed": args.seed,
        "workflow_mix": f"{args.workflows} x {args.items} items",
        "seconds": round(elapsed, 1),
        "workers_killed": kills,
        "pg_connections_terminated": terminations,
        **report,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds; 0: no kills")
    parser.add_argument("--pg-every", type=float, default=7.0, help="seconds; 0: never")
    parser.add_argument("--queue-type", default="quorum", choices=["quorum", "classic"])
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="stop once nothing changed for this long with the work queue empty",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workflows", type=int, default=40, help="workflows in the mix")
    parser.add_argument("--items", type=int, default=100, help="work items of each")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2, default=str)
    print(text)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results / f"chaos-{stamp}.json").write_text(text)
    sys.exit(0 if all(report["checks"].values()) else 1)


if __name__ == "__main__":
    main()
