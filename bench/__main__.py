"""``python -m bench``: ceiling, Lazarus, peers, latency and memory on the local services.

Every section uses the same N, persistent messages, publisher confirms and acks after
the job ran. Prints one table (medians over ``--runs``) and writes every run's raw
figures to ``bench/results/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import aio_pika

from bench import ceiling, deadletters, lazarus, peers
from bench.common import AMQP_URL, Collector
from bench.report import Row, merge_runs, ratio, table
from engine import loop as event_loop
from engine.settings import load_settings

TWO_PROC_RATIOS = "of 2-proc ceiling {}; Lazarus/peer: dramatiq {}, celery {}, taskiq {}"
SECTIONS = ("ceiling", "lazarus", "peers", "latency", "memory", "deadletter")
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="jobs per measurement")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma list of sections: {','.join(SECTIONS)}"
    )
    parser.add_argument("--runs", type=int, default=1, help="repeat each section; medians shown")
    parser.add_argument(
        "--queue-types", default="classic,quorum", help="queue types for ceiling and Lazarus"
    )
    parser.add_argument("--concurrency", type=int, default=256, help="Lazarus worker concurrency")
    parser.add_argument("--latency-rate", type=float, default=500.0, help="jobs/s, latency run")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--memory-in-flight", type=int, default=1000)
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}")
    args.queue_types = [q.strip() for q in args.queue_types.split(",") if q.strip()]
    if args.n < 2:
        parser.error("--n must be at least 2")
    return args


async def attempt(label: str, func: Callable[[], Awaitable[Row]], tries: int = 3) -> Row:
    """Run one measurement; a failure becomes an error row, never a number.

    A failed or disturbed measurement is tried again (three tries in all): on a shared
    box another test suite may close every broker connection (``rabbitmqctl
    close_all_connections``). The row keeps the errors of the failed tries.
    """
    errors = []
    for _ in range(tries):
        print(f"  {label} ...", file=sys.stderr, flush=True)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        try:
            row = await func()
        except Exception as exc:
            traceback.print_exc()
            errors.append(f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[-1]}")
            continue
        row["seconds"] = round(time.perf_counter() - started, 1)
        row["load1_before"] = load_before
        row["load1_after"] = os.getloadavg()[0]
        if errors:
            row["failed_tries"] = errors
        print(f"  {label}: {row}", file=sys.stderr, flush=True)
        return row
    return {"error": errors[-1], "failed_tries": errors}


async def one_run(args: argparse.Namespace, collector: Collector) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n = args.n
    if "ceiling" in args.sections:
        for qt in args.queue_types:
            out[f"ceiling/{qt}"] = await attempt(f"ceiling {qt}", lambda qt=qt: ceiling.run(n, qt))
        out["ceiling-2proc/classic"] = await attempt(
            "ceiling classic, 2 consumer processes",
            lambda: ceiling.run_processes(collector, n, "classic", 2),
        )
    if "lazarus" in args.sections:
        for qt in args.queue_types:
            out[f"lazarus/{qt}"] = await attempt(
                f"lazarus {qt}",
                lambda qt=qt: lazarus.throughput(collector, n, qt, args.concurrency),
            )
            if qt == "quorum":  # right after its untracked twin: the ratio compares neighbours
                out["lazarus-tracked/quorum"] = await attempt(
                    "lazarus quorum, tracking on",
                    lambda: lazarus.throughput(
                        collector, n, "quorum", args.concurrency, tracked=True
                    ),
                )
        out["lazarus-2proc/classic"] = await attempt(
            "lazarus classic, 2 worker processes",
            lambda: lazarus.throughput(collector, n, "classic", args.concurrency, processes=2),
        )
    if "peers" in args.sections:
        for peer in peers.PEERS:
            if not peer.installed():
                out[f"peers/{peer.name}"] = {"status": "not installed", "config": peer.config}
                continue
            out[f"peers/{peer.name}"] = await attempt(
                f"peer {peer.name}", lambda peer=peer: peers.run(peer, collector, n)
            )
    if "latency" in args.sections:
        out["latency"] = await attempt(
            "latency",
            lambda: lazarus.latency(
                collector, args.latency_rate, args.latency_seconds, "quorum", args.concurrency
            ),
        )
    if "memory" in args.sections:
        out["memory"] = await attempt(
            "memory",
            lambda: lazarus.memory(collector, args.memory_in_flight, 2.0, 2, "quorum"),
        )
    if "deadletter" in args.sections:
        for qt in args.queue_types:
            out[f"ceiling-dead/{qt}"] = await attempt(
                f"ceiling of the dead-letter path, {qt}",
                lambda qt=qt: ceiling.run_dead(n, qt),
            )
        dramatiq = next(p for p in peers.PEERS if p.name == "dramatiq")
        if dramatiq.installed():
            out["peers-dead/dramatiq"] = await attempt(
                "dramatiq dead-letter path", lambda: peers.run_dead(dramatiq, collector, n)
            )
        for qt in args.queue_types:
            out[f"deadletter/{qt}"] = deadletters.not_available() or await attempt(
                f"dead-letter burst and bulk requeue, {qt}",
                lambda qt=qt: deadletters.burst_and_requeue(collector, n, qt, args.concurrency),
            )
        out["deadletter-2proc"] = deadletters.not_available() or await attempt(
            "dead-letter burst and bulk requeue, 2 worker processes",
            lambda: deadletters.burst_and_requeue(
                collector, n, "quorum", args.concurrency, processes=2
            ),
        )
    return out


def outcome(row: Row) -> str:
    """What the result column says of a throughput row: leftovers and retried tries."""
    return f"left {row['left_in_queue']}" + retried(row)


def retried(row: Row) -> str:
    if not row.get("failed_tries"):
        return ""
    return f", retried x{len(row['failed_tries'])} (broker disturbed; see JSON)"


def rows_for_table(runs: list[dict[str, Any]], args: argparse.Namespace) -> list[Row]:
    keys = list(runs[0])
    merged = {k: merge_runs([r[k] for r in runs if k in r]) for k in keys}
    rows: list[Row] = []

    def failed(key: str, section: str, system: str, setup: str) -> bool:
        row = merged[key]
        if "error" in row or "status" in row:
            text = row.get("error") or row.get("status")
            rows.append({"section": section, "system": system, "setup": setup, "result": text})
            return True
        return False

    for qt in args.queue_types:
        key = f"ceiling/{qt}"
        if key in merged and not failed(key, "ceiling", "aio-pika", qt):
            m = merged[key]
            rows.append(
                {
                    "section": "ceiling",
                    "system": "aio-pika",
                    "setup": f"{qt}, {m['body_bytes']} B, 1000 in flight, prefetch 256",
                    "publish_per_s": m["publish_per_s"],
                    "process_per_s": m["process_per_s"],
                }
            )
    key = "ceiling-2proc/classic"
    if key in merged and not failed(key, "ceiling", "aio-pika", "classic, 2 processes"):
        rows.append(
            {
                "section": "ceiling",
                "system": "aio-pika",
                "setup": "classic, 2 consumer procs, prefetch 256 each",
                "process_per_s": merged[key]["process_per_s"],
            }
        )
    for qt in args.queue_types:
        key = f"lazarus/{qt}"
        if key in merged and not failed(key, "lazarus", "Lazarus", qt):
            m = merged[key]
            c = merged.get(f"ceiling/{qt}", {})
            rows.append(
                {
                    "section": "lazarus",
                    "system": "Lazarus",
                    "setup": f"{qt}, enqueue_many, 1 worker proc, concurrency {m['concurrency']}",
                    "publish_per_s": m["publish_per_s"],
                    "process_per_s": m["process_per_s"],
                    "result": outcome(m),
                    "ratio": "of ceiling: pub {} proc {}".format(
                        ratio(m["publish_per_s"], c.get("publish_per_s")),
                        ratio(m["process_per_s"], c.get("process_per_s")),
                    ),
                }
            )
    key = "lazarus-2proc/classic"
    if key in merged and not failed(key, "lazarus", "Lazarus", "classic, 2 processes"):
        m = merged[key]
        rows.append(
            {
                "section": "lazarus",
                "system": "Lazarus",
                "setup": f"classic, 2 worker procs, concurrency {m['concurrency']:.0f} each",
                "process_per_s": m["process_per_s"],
                "result": outcome(m),
                "ratio": TWO_PROC_RATIOS.format(
                    ratio(
                        m["process_per_s"],
                        merged.get("ceiling-2proc/classic", {}).get("process_per_s"),
                    ),
                    *(
                        ratio(m["process_per_s"], merged.get(f"peers/{p}", {}).get("process_per_s"))
                        for p in ("dramatiq", "celery", "taskiq")
                    ),
                ),
            }
        )
    key = "lazarus-tracked/quorum"
    if key in merged and not failed(key, "lazarus", "Lazarus", "quorum, tracking on"):
        m = merged[key]
        off = merged.get("lazarus/quorum", {})
        rows.append(
            {
                "section": "lazarus",
                "system": "Lazarus",
                "setup": f"quorum, states tracked, concurrency {m['concurrency']}",
                "publish_per_s": m["publish_per_s"],
                "process_per_s": m["process_per_s"],
                "result": f"{m['succeeded_rows']} rows succeeded, " + outcome(m),
                "ratio": "tracking on/off: proc {}".format(
                    ratio(m["process_per_s"], off.get("process_per_s"))
                ),
            }
        )
    base = merged.get("lazarus/classic", {})
    for peer in peers.PEERS:
        key = f"peers/{peer.name}"
        if key in merged and not failed(key, "peers", peer.name, peer.short):
            m = merged[key]
            rows.append(
                {
                    "section": "peers",
                    "system": peer.name,
                    "setup": peer.short,
                    "publish_per_s": m["publish_per_s"],
                    "process_per_s": m["process_per_s"],
                    "result": outcome(m),
                    "ratio": "Lazarus/peer: pub {} proc {}".format(
                        ratio(base.get("publish_per_s"), m["publish_per_s"]),
                        ratio(base.get("process_per_s"), m["process_per_s"]),
                    ),
                }
            )
    if "latency" in merged and not failed("latency", "latency", "Lazarus", "quorum"):
        m = merged["latency"]
        rows.append(
            {
                "section": "latency",
                "system": "Lazarus",
                "setup": f"quorum, enqueue() at {m['target_per_s']:.0f}/s for "
                f"{args.latency_seconds:.0f} s, concurrency {args.concurrency}",
                "publish_per_s": m["achieved_per_s"],
                "result": f"p50 {m['p50_ms']:.1f} ms, p99 {m['p99_ms']:.1f} ms, "
                f"max {m['max_ms']:.1f} ms ({m['samples']} jobs)" + retried(m),
            }
        )
    if "memory" in merged and not failed("memory", "memory", "Lazarus", "quorum"):
        m = merged["memory"]
        rows.append(
            {
                "section": "memory",
                "system": "Lazarus",
                "setup": f"quorum, {m['in_flight_target']} sleeping jobs in flight "
                f"(seen {m['in_flight_seen']})",
                "result": f"peak RSS {m['peak_rss_mib']:.1f} MiB (idle {m['idle_rss_mib']:.1f}, "
                f"~{m['per_job_kib']:.1f} KiB/job)" + retried(m),
            }
        )
    for qt in args.queue_types:
        key = f"ceiling-dead/{qt}"
        if key in merged and not failed(key, "deadletter", "aio-pika", f"dead-letter path, {qt}"):
            rows.append(
                {
                    "section": "deadletter",
                    "system": "aio-pika",
                    "setup": f"{qt}, consume + confirmed fanout publish to 1 queue + ack",
                    "process_per_s": merged[key]["dead_per_s"],
                    "result": "broker work of a death, 1 process, no database"
                    + retried(merged[key]),
                }
            )
    key = "peers-dead/dramatiq"
    if key in merged and not failed(key, "deadletter", "dramatiq", "dead-letter path"):
        m = merged[key]
        rows.append(
            {
                "section": "deadletter",
                "system": "dramatiq",
                "setup": "2 processes x 8 threads, max_retries=0, nack to .XQ queue",
                "process_per_s": m["dead_per_s"],
                "result": "until the .XQ queue holds all N (no database)" + retried(m),
            }
        )
    dramatiq_dead = merged.get("peers-dead/dramatiq", {}).get("dead_per_s")
    for qt in args.queue_types:
        key = f"deadletter/{qt}"
        if key not in merged or failed(key, "deadletter", "Lazarus", f"burst and requeue, {qt}"):
            continue
        m = merged[key]
        success = merged.get(f"lazarus/{qt}", {}).get("process_per_s")
        tracked = merged.get(f"lazarus-tracked/{qt}", {})
        raw_dead = merged.get(f"ceiling-dead/{qt}", {}).get("dead_per_s")
        rows.append(
            burst_row(
                m,
                f"{qt}, bench_die_once jobs, worker stores rows, conc. {m['concurrency']}",
                "recorded/s: of success {}, of raw death {}, Lazarus/dramatiq {}".format(
                    ratio(m["record_per_s"], success),
                    ratio(m["record_per_s"], raw_dead),
                    ratio(m["record_per_s"], dramatiq_dead),
                ),
            )
        )
        rows.append(
            {
                "section": "deadletter",
                "system": "Lazarus",
                "setup": f"{qt}, Admin.requeue of all N, no worker; then they run again",
                "publish_per_s": m["requeue_per_s"],
                "process_per_s": m.get("rerun_per_s"),
                "result": f"{m['requeued']} moved in {m['requeue_s']:.1f} s, "
                f"queue holds {m['queued_after_requeue']}",
                "ratio": "run again: of tracked success "
                + ratio(m.get("rerun_per_s"), tracked.get("process_per_s")),
            }
        )
    key = "deadletter-2proc"
    if key in merged and not failed(key, "deadletter", "Lazarus", "burst, 2 processes"):
        m = merged[key]
        rows.append(
            burst_row(
                m,
                "quorum, bench_die_once jobs, 2 worker procs, each storing rows",
                f"recorded/s: Lazarus/dramatiq {ratio(m['record_per_s'], dramatiq_dead)}",
            )
        )
    return rows


def burst_row(m: dict[str, Any], setup: str, ratios: str) -> Row:
    """A Lazarus dead-letter burst: deaths per second, and when all N were stored."""
    return {
        "section": "deadletter",
        "system": "Lazarus",
        "setup": setup,
        "process_per_s": m["die_per_s"],
        "result": f"recorded in PostgreSQL {m['record_per_s']:,.0f}/s "
        f"(all N after {m['record_s']:.1f} s)" + retried(m),
        "ratio": ratios,
    }


def versions() -> dict[str, str]:
    found = {}
    for name in (
        "lazarus",
        "aio-pika",
        "aiormq",
        "celery",
        "kombu",
        "dramatiq",
        "pika",
        "taskiq",
        "taskiq-aio-pika",
    ):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_state() -> dict[str, str]:
    """Commit and changed files of the tree measured: others may be editing the engine."""

    def git(*argv: str) -> str:
        root = RESULTS.parent.parent
        done = subprocess.run(["git", *argv], capture_output=True, text=True, cwd=root)
        return done.stdout.strip()

    return {"head": git("rev-parse", "HEAD"), "status": git("status", "--short", "engine")}


async def rabbitmq_version() -> str:
    try:
        connection = await aio_pika.connect(AMQP_URL)
        try:
            props = connection.transport.connection.server_properties  # type: ignore[union-attr]
            return str(props.get("version", "?"))
        finally:
            await connection.close()
    except Exception as exc:
        return f"unknown ({exc!r})"


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    collector = await Collector.open()
    started = datetime.now(UTC)
    runs = []
    try:
        for index in range(args.runs):
            print(f"run {index + 1} of {args.runs}", file=sys.stderr, flush=True)
            runs.append(await one_run(args, collector))
    finally:
        collector.close()
    rows = rows_for_table(runs, args)
    print(
        f"\nLazarus bench: N={args.n}, runs={args.runs} (medians), persistent + confirms + "
        f"ack after run, {os.cpu_count()} CPUs, event loop "
        f"{type(asyncio.get_running_loop()).__module__.split('.')[0]}"
    )
    print(table(rows))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    document = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "args": {k: v for k, v in vars(args).items()},
        "machine": {
            "event_loop": type(asyncio.get_running_loop()).__module__,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "rabbitmq": await rabbitmq_version(),
        },
        "versions": versions(),
        "git": git_state(),
        "runs": runs,
        "table": rows,
    }
    path.write_text(json.dumps(document, indent=2, default=str))
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    print(f"\nraw figures: {shown}")
    return 0


if __name__ == "__main__":
    # The harness (and so the raw aio-pika ceiling) runs on the loop Lazarus runs on.
    sys.exit(event_loop.run(main(), load_settings().event_loop))
