"""Lazarus handlers of the benchmark, loaded by :mod:`bench.lazarus_worker`.

``noop`` is the same empty job as ``handlers.examples.noop`` plus the completion
probe every other system's benchmark task also calls; the bench worker loads this
module instead of ``handlers.examples`` (one type, one handler).
"""

from __future__ import annotations

import asyncio
import os
import random
import time

from bench import probe
from engine import JobContext, Permanent, RetryPolicy, Transient, handler
from engine.message import now_utc
from engine.workflows import INPUT, FanOut, Step, Workflow, register_workflow


@handler("noop")
async def noop(ctx: JobContext) -> None:
    probe.finished()


@handler("bench_latency")
async def latency(ctx: JobContext) -> None:
    """Records enqueue-to-start latency: the message's created_at against the clock now."""
    probe.started((now_utc() - ctx.message.created_at).total_seconds())
    probe.finished()


@handler("bench_sleep")
async def sleep(ctx: JobContext) -> None:
    """Holds a worker slot for ``seconds`` without using CPU: jobs in flight, for memory."""
    probe.started()
    await asyncio.sleep(float((ctx.payload or {}).get("seconds", 1.0)))
    probe.finished()


@handler("bench_die")
async def die(ctx: JobContext) -> None:
    """Fails permanently: straight to the dead letters, for the dead-letter burst."""
    probe.finished()
    raise Permanent("bench_die dies on purpose")


@handler("bench_die_once")
async def die_once(ctx: JobContext) -> None:
    """Dies like ``bench_die`` in its first generation; succeeds once requeued."""
    probe.finished()
    if ctx.message.generation == 0:
        raise Permanent("bench_die dies on purpose")


# Chaos run (bench.chaos): every run appends "job_id attempt generation" to the file
# BENCH_CHAOS_RUNS with one unbuffered write, so a SIGKILL right after loses no line.
_runs_fd: int | None = None


def _record_run_fd() -> None:
    global _runs_fd
    if _runs_fd is None:
        _runs_fd = os.open(os.environ["BENCH_CHAOS_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)


def _record_run(ctx: JobContext) -> None:
    _record_run_fd()
    assert _runs_fd is not None
    os.write(_runs_fd, f"{ctx.job_id} {ctx.attempt} {ctx.message.generation}\n".encode())


@handler("chaos_ok")
async def chaos_ok(ctx: JobContext) -> None:
    _record_run(ctx)
    await asyncio.sleep(random.uniform(0, 0.04))  # jobs in flight whenever a worker is killed


@handler("chaos_flaky", policy=RetryPolicy(attempts=1, max_retries=3, retry_delay=0.2))
async def chaos_flaky(ctx: JobContext) -> None:
    """Fails its first attempt: a broker retry, then success."""
    _record_run(ctx)
    if ctx.attempt == 0:
        raise RuntimeError("chaos_flaky fails its first attempt")


@handler("chaos_die")
async def chaos_die(ctx: JobContext) -> None:
    _record_run(ctx)
    raise Permanent("chaos_die dies on purpose")


# The chaos run's workflow mix: a fan-out over the input's items (one in ten fails its
# first attempt and goes through a broker retry), a fan-in that reads every item's
# result, and a step after it. The fan-in and the last step record what they saw.
@handler("chaos_wf_item", policy=RetryPolicy(attempts=1, max_retries=3, retry_delay=0.2))
async def chaos_wf_item(ctx: JobContext) -> int:
    _record_run(ctx)
    await asyncio.sleep(random.uniform(0, 0.02))
    if int(ctx.payload) % 10 == 0 and ctx.attempt == 0:
        raise RuntimeError("chaos_wf_item fails its first attempt")
    return int(ctx.payload)


@handler("chaos_wf_join")
async def chaos_wf_join(ctx: JobContext) -> int:
    _record_run(ctx)
    values = [v async for _, v in ctx.item_results("items")]
    assert ctx.workflow is not None
    _record_line(f"JOIN {ctx.workflow.workflow_id} {len(values)} {sum(values)}")
    return len(values)


@handler("chaos_wf_end")
async def chaos_wf_end(ctx: JobContext) -> None:
    _record_run(ctx)
    assert ctx.workflow is not None
    _record_line(f"END {ctx.workflow.workflow_id} {await ctx.result_of('join')}")


def _record_line(line: str) -> None:
    _record_run_fd()
    assert _runs_fd is not None
    os.write(_runs_fd, f"{line}\n".encode())


CHAOS_FLOW = register_workflow(
    Workflow(
        "chaos_flow",
        [
            FanOut("items", "chaos_wf_item", items_from=INPUT),
            Step("join", "chaos_wf_join", after=("items",)),
            Step("end", "chaos_wf_end", after=("join",)),
        ],
    )
)


# Workflows (bench.workflows). Steps and items are no-ops that call the probe; an item of
# ``wf_item_flaky`` whose index is a multiple of 100 fails its first run (a broker retry
# after WF_RETRY_DELAY s, as Celery's countdown in bench.peers.celery_chord_app). The
# fan-in appends "workflow_id wall-clock-start attempt" to BENCH_WF_RUNS, one unbuffered
# write per run, so every run of it is counted and timed from inside the worker.
WF_RETRY_DELAY = 0.1
FLAKY_EVERY = 100
_wf_runs_fd: int | None = None


@handler("wf_step")
async def wf_step(ctx: JobContext) -> None:
    probe.finished()


@handler("wf_item")
async def wf_item(ctx: JobContext) -> None:
    probe.finished()


@handler(
    "wf_item_flaky",
    policy=RetryPolicy(attempts=1, max_retries=1, retry_delay=WF_RETRY_DELAY, retry_jitter=0.0),
)
async def wf_item_flaky(ctx: JobContext) -> None:
    if ctx.attempt == 0 and int(ctx.payload) % FLAKY_EVERY == 0:
        raise Transient(f"item {ctx.payload} fails its first run")
    probe.finished()


@handler("wf_join")
async def wf_join(ctx: JobContext) -> None:
    started = time.time()
    global _wf_runs_fd
    if _wf_runs_fd is None:
        _wf_runs_fd = os.open(os.environ["BENCH_WF_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    workflow = ctx.workflow.workflow_id if ctx.workflow else ctx.job_id
    os.write(_wf_runs_fd, f"{workflow} {started!r} {ctx.attempt}\n".encode())
